"""Build the Perf+ C extensions; all other metadata lives in pyproject.toml."""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

C_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
CXX_FLAGS = ["-O2", "-Wall", "-Wextra", "-std=c++17", "-fno-exceptions", "-fno-rtti"]
PERFPLUS = Path("perfplus_agent/perfplus_c")


class BuildExt(build_ext):
    """Compile C++ shims with C++ flags, C files with C flags (one Extension mixes both)."""

    def build_extension(self, ext: Extension) -> None:
        compile_one = self.compiler._compile

        def _compile(*args: object) -> None:
            obj, src, ext_, cc_args, postargs, pp_opts = args
            flags = CXX_FLAGS if str(src).endswith(".cc") else postargs
            compile_one(obj, src, ext_, cc_args, flags, pp_opts)

        self.compiler._compile = _compile
        try:
            super().build_extension(ext)
        finally:
            self.compiler._compile = compile_one


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "perfplus_agent.perfplus_c._perfplus",
            sources=[str(PERFPLUS / name) for name in (
                "_perfplus.c", "py_filter.c", "py_rewriter.c", "filter.c", "multifd.c",
                "ramrewriter.c", "hashes.c", "hh_avx2.cc", "hh_sse41.cc", "hh_portable.cc",
                "hh_dispatch.cc")],
            depends=[str(p) for p in sorted(PERFPLUS.glob("*.h"))],
            # libhighwayhash is linked statically (Debian ships no versioned shared ABI for it)
            libraries=[":libhighwayhash.a", "sodium", "crypto", "stdc++"],
            extra_compile_args=C_FLAGS,
        ),
        Extension(
            "perfplus_agent.perfplus_c._seal",
            sources=["perfplus_agent/perfplus_c/_seal.c"],
            libraries=["crypto"],
            extra_compile_args=C_FLAGS,
        ),
    ]
)
