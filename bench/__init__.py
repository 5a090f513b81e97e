"""Benchmarks. Run each as a script: ``.venv/bin/python bench/storage.py``."""
