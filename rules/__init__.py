"""The decision side of sipscreen: pure, synchronous, no I/O.

How this works: ``rules.numbers`` normalises numbers to E.164 and applies
the structural NANP rules; ``rules.snapshot`` holds everything a decision
reads in memory; ``rules.engine.decide`` turns one call's ``CallFacts`` into
a ``Verdict`` against a ``Snapshot``. The FCC data parsers (``rmd``,
``notices``, ``traceback``, ``nanpa``, ``dno``) turn text into records for
the store to load. Nothing in this package imports ``proxy`` or does I/O.
"""
