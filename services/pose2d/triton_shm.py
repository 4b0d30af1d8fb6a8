"""Triton inference over system shared memory, for a Triton server on the same host.

Through plain gRPC every request's pixels are copied into a protobuf message, sent over the loopback
socket and parsed by the server, and every output comes back the same way (a frame's landmark
heatmaps alone are 0.6 MB of float32). With system shared memory the client writes the inputs into
a POSIX shared-memory region that the server has mapped, asks for the outputs to be written into
another, and the gRPC request carries only the tensors' names, shapes and region offsets.

``SharedMemoryInfer`` owns the regions of one client: a pool of slots (an input and an output region
each), registered with the server once and reused; a request holds one slot from writing its inputs
until its outputs are copied out, so concurrent requests take different slots. A region too small for
a request is replaced by a larger one. A server that lost the registrations (it restarted) gets them
again on the next request. Regions are named ``hpe3d_<pid>_...``; before its first region a process
frees those of client processes that are gone (killed before they could unregister).

``shared_memory_wanted`` says whether a client should try it: setting ``triton_shared_memory``
(HPE3D_TRITON_SHARED_MEMORY) ``auto`` uses it when the server's address is this machine's loopback,
``on`` always tries (a server on the same host under another name), ``off`` never. A server that
refuses the registration (a remote one, or one guarding its shared-memory API with a token) leaves
the client on plain gRPC, logged once; the results are the same either way.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from services.common.pids import is_running

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_DTYPES = {"TYPE_FP32": ("FP32", np.float32), "TYPE_UINT8": ("UINT8", np.uint8), "TYPE_FP16": ("FP16", np.float16),
           "TYPE_INT32": ("INT32", np.int32)}
_names = itertools.count()


def url_host(url: str) -> str:
    """The host part of a ``host:port`` (or ``[v6]:port``) address."""
    return url.rsplit(":", 1)[0] if ":" in url and not url.endswith("]") else url


def shared_memory_wanted(url: str, mode: str) -> bool:
    """Whether a client of the Triton server at ``url`` should try shared memory under ``mode``."""
    if mode not in MODES:
        raise ValueError(f"triton_shared_memory must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off" or not os.path.isdir("/dev/shm"):
        return False
    return mode == "on" or url_host(url) in LOOPBACK_HOSTS


SHM_DIR = "/dev/shm"
_swept = threading.Lock()                # sweep_stale_regions runs once per process
_swept_done = False


def _stale(name: str) -> bool:
    parts = name.split("_")
    return len(parts) > 2 and parts[0] == "hpe3d" and parts[1].isdigit() and not is_running(int(parts[1]))


def sweep_stale_regions(client) -> list[str]:
    """Free what a killed client process left behind (regions ``hpe3d_<pid>_...`` of a pid that is no
    longer alive): its registrations with the server (which keep the memory mapped there) and any file
    left in /dev/shm (Python's resource tracker usually unlinks those). Returns the names freed."""
    freed = []
    try:
        registered = list(client.get_system_shared_memory_status().regions)
    except Exception:  # noqa: BLE001 - a server that will not say: the registration below says more
        registered = []
    for name in registered:
        if _stale(name):
            try:
                client.unregister_system_shared_memory(name)
                freed.append(name)
            except Exception:  # noqa: BLE001 - gone meanwhile
                pass
    for name in os.listdir(SHM_DIR) if os.path.isdir(SHM_DIR) else []:
        if _stale(name):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                freed.append(name)
            except OSError:
                pass
    if freed:
        log.info("freed %d shared-memory regions of client processes that are gone", len(freed))
    return freed


class SharedMemoryRefused(RuntimeError):
    """The server would not register or use the client's shared memory: the client goes on with gRPC."""


class OutputSizeUnknown(LookupError):
    """An output the model's config does not list with fixed dims: this request goes through gRPC (where
    the server answers it, or says what is wrong with it)."""


@dataclass
class _Region:
    name: str
    handle: object
    size: int


class _Slot:
    """An input and an output region of one request in flight."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.input: _Region | None = None
        self.output: _Region | None = None


class SharedMemoryInfer:
    """Inference through system shared memory for one ``tritonclient.grpc.InferenceServerClient``.

    ``infer(model, {input: array}, outputs)`` returns ``{output: array}`` like ``reply.as_numpy``;
    the arrays are copies (the regions are reused). Raises ``SharedMemoryRefused`` when the server
    will not register or find the regions (after one re-registration), ``OutputSizeUnknown`` for an
    output the model's config does not give fixed dims, and the client's ``InferenceServerException``
    for everything else (an outage, bad inputs)."""

    def __init__(self, client, tgrpc):
        self._client = client
        self._tgrpc = tgrpc
        self._prefix = f"hpe3d_{os.getpid()}_{next(_names)}"
        self._free: list[_Slot] = []
        self._slots = 0
        self._lock = threading.Lock()
        self._outputs: dict[str, dict[str, tuple[tuple[int, ...], str, type]]] = {}
        self._closed = False

    # -- regions ----------------------------------------------------------------------------------
    def _create(self, slot: _Slot, kind: str, size: int) -> _Region:
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import InferenceServerException

        global _swept_done
        with _swept:
            if not _swept_done:          # once per process, before its first region
                _swept_done = True
                sweep_stale_regions(self._client)
        name = f"{slot.prefix}_{kind}"
        handle = shm.create_shared_memory_region(name, "/" + name, size)
        try:
            self._client.register_system_shared_memory(name, "/" + name, size)
        except InferenceServerException as exc:
            shm.destroy_shared_memory_region(handle)
            if "unavailable" in str(exc).lower() and "restricted" not in str(exc).lower():
                raise
            raise SharedMemoryRefused(f"Triton refused the shared-memory region {name}: {exc}") from exc
        return _Region(name, handle, size)

    def _drop(self, region: _Region | None) -> None:
        import tritonclient.utils.shared_memory as shm

        if region is None:
            return
        try:
            self._client.unregister_system_shared_memory(region.name)
        except Exception:  # noqa: BLE001 - the server may be gone; the local region is freed anyway
            pass
        shm.destroy_shared_memory_region(region.handle)

    def _ensure(self, slot: _Slot, in_size: int, out_size: int) -> None:
        if slot.input is None or slot.input.size < in_size:
            self._drop(slot.input)
            slot.input = None
            slot.input = self._create(slot, "in", in_size)
        if slot.output is None or slot.output.size < out_size:
            self._drop(slot.output)
            slot.output = None
            slot.output = self._create(slot, "out", out_size)

    def _reregister(self, slot: _Slot) -> None:
        """Register the slot's regions again (a restarted server forgot them)."""
        from tritonclient.utils import InferenceServerException

        for region in (slot.input, slot.output):
            try:
                self._client.unregister_system_shared_memory(region.name)
                self._client.register_system_shared_memory(region.name, "/" + region.name, region.size)
            except InferenceServerException as exc:
                raise SharedMemoryRefused(f"Triton refused the shared-memory region {region.name} again: "
                                          f"{exc}") from exc

    def _take(self) -> _Slot:
        with self._lock:
            if self._free:
                return self._free.pop()
            self._slots += 1
            return _Slot(f"{self._prefix}_{self._slots}")

    def _give(self, slot: _Slot) -> None:
        with self._lock:
            if self._closed:
                self._drop(slot.input)
                self._drop(slot.output)
            else:
                self._free.append(slot)

    def close(self) -> None:
        """Unregister and free every region (requests in flight free theirs when they end)."""
        with self._lock:
            self._closed = True
            slots, self._free = self._free, []
        for slot in slots:
            self._drop(slot.input)
            self._drop(slot.output)

    # -- inference --------------------------------------------------------------------------------
    def _output_specs(self, model: str, timeout_s: float) -> dict[str, tuple[tuple[int, ...], str, type]]:
        """Per output of ``model``: dims without the batch, wire type and numpy dtype (its config)."""
        if model not in self._outputs:
            config = self._client.get_model_config(model, as_json=True, client_timeout=timeout_s)["config"]
            specs = {}
            for o in config.get("output", []):
                wire, dtype = _DTYPES[o.get("data_type", "TYPE_FP32")]
                specs[o["name"]] = (tuple(int(d) for d in o["dims"]), wire, dtype)
            self._outputs[model] = specs
        return self._outputs[model]

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | list[str],
              timeout_s: float) -> dict[str, np.ndarray]:
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        specs = self._output_specs(model, timeout_s)
        unknown = [n for n in outputs if n not in specs or any(d < 0 for d in specs[n][0])]
        if unknown:
            raise OutputSizeUnknown(f"model {model!r} has no output {', '.join(unknown)} of fixed dims")
        batch = next(iter(inputs.values())).shape[0]
        arrays = {name: np.ascontiguousarray(a) for name, a in inputs.items()}
        in_offsets, offset = {}, 0
        for name, a in arrays.items():
            in_offsets[name] = offset
            offset += a.nbytes
        in_size = offset
        out_offsets, offset = {}, 0
        for name in outputs:
            dims, _, dtype = specs[name]
            out_offsets[name] = offset
            offset += batch * int(np.prod(dims)) * np.dtype(dtype).itemsize
        out_size = offset
        slot = self._take()
        try:
            self._ensure(slot, in_size, out_size)
            for name, a in arrays.items():
                shm.set_shared_memory_region(slot.input.handle, [a], offset=in_offsets[name])
            tensors = []
            for name, a in arrays.items():
                t = self._tgrpc.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
                t.set_shared_memory(slot.input.name, a.nbytes, offset=in_offsets[name])
                tensors.append(t)
            wanted = []
            for name in outputs:
                dims, _, dtype = specs[name]
                o = self._tgrpc.InferRequestedOutput(name)
                o.set_shared_memory(slot.output.name, batch * int(np.prod(dims)) * np.dtype(dtype).itemsize,
                                    offset=out_offsets[name])
                wanted.append(o)
            try:
                reply = self._client.infer(model, tensors, outputs=wanted, client_timeout=timeout_s)
            except InferenceServerException as exc:
                if "shared memory" not in str(exc).lower() or exc.status() == "StatusCode.UNAVAILABLE":
                    raise
                self._reregister(slot)
                try:
                    reply = self._client.infer(model, tensors, outputs=wanted, client_timeout=timeout_s)
                except InferenceServerException as again:
                    if "shared memory" not in str(again).lower():
                        raise
                    raise SharedMemoryRefused(f"Triton cannot use the shared-memory regions: {again}") from again
            result = {}
            for name in outputs:
                shape = [int(d) for d in reply.get_output(name).shape]
                result[name] = shm.get_contents_as_numpy(slot.output.handle, specs[name][2], shape,
                                                         offset=out_offsets[name]).copy()
            return result
        finally:
            self._give(slot)


class TritonTensors:
    """How a Triton client sends tensors and gets outputs: through shared memory where
    ``shared_memory_wanted`` and the server agrees, else in the gRPC messages (also after the server
    refused shared memory once). ``infer`` raises the client's ``InferenceServerException``."""

    def __init__(self, client, tgrpc, url: str, mode: str | None = None):
        if mode is None:
            from services.common.settings import Settings
            mode = Settings.from_env().triton_shared_memory
        self._client = client
        self._tgrpc = tgrpc
        self.url = url
        self.shm: SharedMemoryInfer | None = SharedMemoryInfer(client, tgrpc) if shared_memory_wanted(url, mode) \
            else None

    @property
    def shared_memory(self) -> bool:
        """Whether requests go through shared memory now."""
        return self.shm is not None

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | list[str],
              timeout_s: float) -> dict[str, np.ndarray]:
        shared = self.shm
        if shared is not None:
            try:
                return shared.infer(model, inputs, outputs, timeout_s)
            except OutputSizeUnknown:
                pass
            except SharedMemoryRefused as exc:
                log.warning("Triton at %s: %s; tensors go in the gRPC messages from now on", self.url, exc)
                self.shm = None
                shared.close()
        return self.grpc_infer(model, inputs, outputs, timeout_s)

    def grpc_infer(self, model: str, inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | list[str],
                   timeout_s: float) -> dict[str, np.ndarray]:
        """The tensors in the gRPC request and reply (no shared memory)."""
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, a in inputs.items():
            a = np.ascontiguousarray(a)
            t = self._tgrpc.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
            t.set_data_from_numpy(a)
            tensors.append(t)
        reply = self._client.infer(model, tensors, outputs=[self._tgrpc.InferRequestedOutput(n) for n in outputs],
                                   client_timeout=timeout_s)
        return {name: reply.as_numpy(name) for name in outputs}

    def close(self) -> None:
        if self.shm is not None:
            self.shm.close()
