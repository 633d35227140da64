"""Training strategies behind one small interface (see ``base.Method``) and their registry."""
