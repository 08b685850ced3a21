"""Hostile expressions fed to every place lemon-pl reads math from a user (tests/test_expressions.py,
tests/predict/test_injection.py). Each payload that could run code would create the file PWNED in
the working directory.

The classes: strings and f-strings (the ``--u0`` hole of issue 22), attributes, subscripts,
lambdas and keywords, calls of anything not listed, comprehensions, dunder names, other number
syntaxes, unicode look-alikes, statement separators and comments, line continuations, and numbers
that would hang exact arithmetic."""

INJECTIONS = [
    "sin('__import__(\"os\").system(\"touch PWNED\")')",
    "f'{__import__(\"os\").system(\"touch PWNED\")}'",
    "sin(f'{1}')",
    "cos(\"open('PWNED', 'w')\")",
    "__import__('os').system('touch PWNED')",
    "x.__class__.__bases__",
    "x[0]",
    "(lambda: 1)()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "getattr(x, 'real')",
    "eval('1')",
    "exec('1')",
    "open('PWNED', 'w')",
    "x if x else 1",
    "x; import os",
    "x # comment",
    "x \\\n + 1",
    "0x1F",
    "1_000",
    "1j",
    "\u0445",  # Cyrillic x
    "x @ x",
    "x == 1",
    "{x}",
    "`x`",
    "x!",
    "b'x'",
    "Symbol('y')",
    "S('1')",
]
HUGE = ["9^9^9^9", "x + 9^9^9^9", "x**(10**10)", "(1e-100)^100^100", "10^(10^10)", "E^E^E^E^E", "1e999",
        "9" * 60, "x^1e5", "2^1000", "1e10^40", "(1e100)^(1e100)", "1e300*1e300*x"]
