"""Editor tests: a real GIMP 3 / Krita in a Debian 13 root (see roots.py)."""
