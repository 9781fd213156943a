"""The worker names a llama.cpp build with AMX kernels at start (a native build on an AMX
Xeon crashes its decode: docs/local-workers.md), and stays quiet about any other build, such
as the one installed here."""

from __future__ import annotations

import llama_cpp

from llm_gateway.worker.models import amx_problem

NATIVE_ON_AMX = ("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | "
                 "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | ")


def test_a_build_with_amx_kernels_is_named_with_the_fix():
    problem = amx_problem(NATIVE_ON_AMX, "0.3.36")
    assert problem is not None
    assert "0.3.36" in problem and "SIGSEGV" in problem
    assert "Building llama-cpp-python" in problem


def test_the_installed_build_has_none():
    # CI builds without them (.ci/run); a build that had them would fail here first.
    info = llama_cpp.llama_print_system_info().decode()
    assert info.startswith("CPU :")
    assert amx_problem(info, llama_cpp.__version__) is None
