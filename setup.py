"""Only the compiled part of SanKe: everything else is declared in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["media/fastpath_build.py:ffibuilder"])
