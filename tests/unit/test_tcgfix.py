"""The QEMU 7.2 TCG workaround: which guests are affected and how the wrapper fixes them."""

import json

import pytest

from perfplus_agent.qemu.tcgfix import EXTRA_BYTES, affected, rewrite_argv

MIB = 1024 * 1024
LIBVIRT_ARGS = [
    "-name", "guest=vm1", "-machine", "pc-i440fx-7.2,usb=off,memory-backend=pc.ram",
    "-accel", "tcg", "-m", "256",
    "-object", '{"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456}',
]


@pytest.mark.parametrize(
    ("version", "tcg", "size", "expected"),
    [
        ((7, 2), True, 256 * MIB, True),
        ((7, 2), True, 256 * MIB + EXTRA_BYTES, False),
        ((7, 2), False, 256 * MIB, False),
        ((9, 0), True, 256 * MIB, False),
        ((8, 2), True, 512 * 1024, True),
    ],
)
def test_affected(version, tcg, size, expected):
    assert affected(version, tcg, size) is expected


def test_rewrite_grows_m_and_backend_consistently():
    out = rewrite_argv(LIBVIRT_ARGS)
    m = out[out.index("-m") + 1]
    backend = json.loads(out[out.index("-object") + 1])
    assert m == f"{256 * 1024 + EXTRA_BYTES // 1024}k"
    assert backend["size"] == 256 * MIB + EXTRA_BYTES
    assert backend["size"] == int(m[:-1]) * 1024
    assert not affected((7, 2), True, backend["size"])


def test_rewrite_keeps_other_arguments():
    out = rewrite_argv(LIBVIRT_ARGS)
    assert [a for a in out if a not in (out[out.index("-m") + 1], out[out.index("-object") + 1])] \
        == [a for a in LIBVIRT_ARGS if a not in ("256", LIBVIRT_ARGS[-1])]


@pytest.mark.parametrize(("given", "expected"), [
    ("size=262144k", "size=262152k"),
    ("size=256M,slots=2,maxmem=1G", "size=262152k,slots=2,maxmem=1G"),
    ("1G", "1048584k"),
])
def test_rewrite_m_forms(given, expected):
    out = rewrite_argv(["-accel", "tcg", "-m", given])
    assert out[-1] == expected


def test_kvm_guest_untouched():
    args = [a if a != "tcg" else "kvm" for a in LIBVIRT_ARGS]
    assert rewrite_argv(args) == args


def test_machine_accel_tcg_is_recognised():
    out = rewrite_argv(["-machine", "pc,accel=tcg", "-m", "128"])
    assert out[-1] == "131080k"


def test_other_objects_untouched():
    other = '{"qom-type":"memory-backend-ram","id":"ram-node0","size":1048576}'
    assert rewrite_argv(["-accel", "tcg", "-object", other])[-1] == other
