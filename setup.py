"""Build hook for the optional C header scan (proxy/sip/_scan.c).

Everything else about the package is in pyproject.toml. ``optional=True``:
without a C compiler the install still succeeds and the pure-Python scan in
proxy/sip/message.py runs instead (same results, slower).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("proxy.sip._scan", ["proxy/sip/_scan.c"], optional=True)])
