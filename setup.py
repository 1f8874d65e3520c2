"""Build hook for the optional C extensions.

- proxy/sip/_scan.c: the common path of the SIP parser and the lean response
  relay (the Python code in proxy/sip/ is the reference and the fallback),
  and the lean forward of in-dialog ACK/BYE (without it: the full parse).
- proxy/_udpio.c: batched UDP receive and send (recvmmsg/sendmmsg) for the
  worker (proxy/server/datapath.py falls back to one transport callback per datagram).

Everything else about the package is in pyproject.toml. ``optional=True``:
without a C compiler the install still succeeds and the pure-Python code runs
instead (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("proxy.sip._scan", ["proxy/sip/_scan.c"], optional=True),
        Extension("proxy._udpio", ["proxy/_udpio.c"], optional=True),
    ]
)
