"""The optional C extensions: the capture reader's fast lane (phonehome._lane), the detector's
walk through a part's views (phonehome._detect), the HTTP/1 header split (phonehome._http1) and
the one-call slot stores of quickinit's __init__ (phonehome._slots).

Everything else about the package is in pyproject.toml. The extensions are optional: where they
do not build (no compiler, no Python headers), phonehome runs the same code in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            name,
            [f"src/{name.replace('.', '/')}.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        )
        # The capture reader's fast lane, the detector's walk through a part's views, the
        # HTTP/1 parser's split of a header section, and quickinit's slot stores.
        for name in ("phonehome._lane", "phonehome._detect", "phonehome._http1", "phonehome._slots")
    ]
)
