"""Build the Perf+ C extension; all other metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "perfplus_agent.perfplus_c._perfplus",
            sources=["perfplus_agent/perfplus_c/_perfplus.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        ),
        Extension(
            "perfplus_agent.perfplus_c._seal",
            sources=["perfplus_agent/perfplus_c/_seal.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
        ),
    ]
)
