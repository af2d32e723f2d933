"""Task functions for bench_process.py, importable by every pool's workers."""


def tiny(x):
    return x + 1


def same(value):
    return value
