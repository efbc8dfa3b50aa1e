"""Independent numpy references the tests compare megq against (never megq code)."""
