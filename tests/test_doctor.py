"""``tunelab doctor`` says what is installed, and for what is wrong, how to fix it."""

from __future__ import annotations

from conftest import cpu_matmul_rates
from tunelab import doctor
from tunelab.cli.main import main
from tunelab.doctor import check_cache, check_versions


def test_a_version_other_than_the_tested_one_is_named_with_the_fix(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# pinned\ntransformers==0.0.1\npeft==0.0.2\n")
    assert doctor.tested_versions(constraints) == {"transformers": "0.0.1", "peft": "0.0.2"}
    findings = {finding.check: finding for finding in check_versions(constraints)}
    assert not findings["transformers"].ok
    assert findings["transformers"].detail.endswith("tested with 0.0.1")
    assert "scripts/install.sh" in findings["transformers"].fix


def test_an_unwritable_cache_is_named_with_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(blocker / "cache"))
    (finding,) = check_cache()
    assert not finding.ok and "TUNELAB_CACHE_DIR" in finding.fix


def test_doctor_on_this_install(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert "torch" in out and "transformers" in out and "model minilm" in out
    assert code == (1 if "FIX" in out else 0)


def test_a_cpu_whose_bf16_is_slow_is_told_to_keep_fp32(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=1e9)
    (finding,) = doctor.check_cpu_bf16()
    assert finding.ok and "1.0 GFLOP/s against 63.0 in fp32" in finding.detail and "slower" in finding.detail
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=345e9)
    (finding,) = doctor.check_cpu_bf16()
    assert "trains faster here" in finding.detail
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert doctor.check_cpu_bf16() == []  # on a GPU machine the CPU's bf16 trains nothing
