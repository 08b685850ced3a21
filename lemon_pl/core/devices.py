"""Device strings a user gives (``--device cuda:1``), checked before anything is built on them.

:func:`check_device` turns the text into a ``torch.device`` or raises :class:`DeviceError`, a
``ValueError`` whose message is one line naming the flag: the string must parse as a torch device
of a type lemon-pl runs on (``cpu``, ``cuda``, ``mps``), and that device must exist in this
process - ``cuda`` needs a CUDA build of torch with a visible GPU and an index below
``torch.cuda.device_count()``, ``mps`` needs ``torch.backends.mps.is_available()``. Nothing is
allocated on the device::

    check_device("cuda")      # torch.device('cuda') on a GPU machine
    check_device("bogus")     # DeviceError: --device 'bogus' is not a torch device; ...
    check_device("cuda")      # DeviceError on a CPU-only torch build: ... no CUDA device ...
"""

from __future__ import annotations

#: the device types lemon-pl runs on
DEVICE_TYPES = ("cpu", "cuda", "mps")


class DeviceError(ValueError):
    """A device string that cannot be used here (one line naming the flag)."""


def check_device(text, flag: str = "--device"):
    """``text`` as a ``torch.device`` that exists in this process, or one :class:`DeviceError` line."""
    import torch

    if isinstance(text, torch.device):
        dev = text
        shown = str(text)
    else:
        shown = " ".join(str(text).split())
        if not shown or len(shown) > 64:
            raise DeviceError(f"{flag} {shown[:64]!r} is not a torch device; use one of "
                              f"{', '.join(DEVICE_TYPES)} (cuda:N for the N-th GPU)")
        try:
            dev = torch.device(shown)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(f"{flag} {shown!r} is not a torch device; use one of {', '.join(DEVICE_TYPES)} "
                              "(cuda:N for the N-th GPU)") from None
    if dev.type not in DEVICE_TYPES:
        raise DeviceError(f"{flag} {shown!r}: lemon-pl runs on {', '.join(DEVICE_TYPES)}, not {dev.type}")
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise DeviceError(f"{flag} {shown!r}: there is one cpu device (cpu or cpu:0)")
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise DeviceError(f"{flag} {shown!r}: no CUDA device is available to torch ({torch.__version__}, "
                              f"{build}); use --device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{flag} {shown!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                              f"(cuda:0{f' .. cuda:{count - 1}' if count > 1 else ''})")
        return dev
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise DeviceError(f"{flag} {shown!r}: no MPS device is available to torch ({torch.__version__}); use "
                          "--device cpu")
    if dev.index not in (None, 0):
        raise DeviceError(f"{flag} {shown!r}: there is one mps device (mps or mps:0)")
    return dev


__all__ = ["DEVICE_TYPES", "DeviceError", "check_device"]
