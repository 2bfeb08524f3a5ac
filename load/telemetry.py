"""Telemetry sampled beside a run, on the requests' clock (`time.perf_counter_ns()`).

- GPU: NVML (`nvidia-ml-py`) at 5 Hz or faster: device memory used, per-process memory, utilisation, power, the
  energy counter, SM clock. Without an NVIDIA GPU, NVML raises (e.g. NVMLError_LibraryNotFound): the result
  records `available: false` with NVML's own error text.
- RSS of the local server process (and its children), when the harness knows its pid.
- `/api/ps` `size_vram` (summed over loaded models), every second, for every target.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psutil

GPU_PERIOD_S = 0.2
RSS_PERIOD_S = 0.2
PS_PERIOD_S = 1.0


def nvml_probe() -> tuple[Any | None, str | None]:
    """(pynvml module, None) when NVML works here, else (None, NVML's error text)."""
    try:
        import pynvml
    except ImportError as exc:
        return None, f"nvidia-ml-py not installed: {exc}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, str(exc)
    return pynvml, None


def gpu_inventory() -> list[dict[str, Any]]:
    nv, _ = nvml_probe()
    if nv is None:
        return []
    gpus = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        name = nv.nvmlDeviceGetName(h)
        gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                     "memory_total_bytes": int(nv.nvmlDeviceGetMemoryInfo(h).total)})
    return gpus


def _nvml_sample(nv: Any, handle: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"t_ns": time.perf_counter_ns()}
    mem = nv.nvmlDeviceGetMemoryInfo(handle)
    s["memory_used_bytes"] = int(mem.used)
    for key, call in (
        ("utilization_gpu_percent", lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu),
        ("power_mw", lambda: nv.nvmlDeviceGetPowerUsage(handle)),
        ("energy_mj", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(handle)),
        ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)),
        ("processes", lambda: [{"pid": p.pid, "used_bytes": p.usedGpuMemory}
                               for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)]),
    ):
        try:
            s[key] = call()
        except nv.NVMLError:
            s[key] = None  # not supported on this device/driver
    return s


class TelemetrySampler:
    """A background thread sampling NVML, the server's RSS and /api/ps until `stop()`."""

    def __init__(self, base_url: str, server_pid: int | None, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.server_pid = server_pid
        self.headers = headers or {}
        self.gpu: dict[str, Any] = {"available": False, "reason": None, "period_s": GPU_PERIOD_S, "devices": [],
                                    "samples": []}
        self.rss: dict[str, Any] = {"pid": server_pid, "samples": [], "reason": None}
        self.ps: list[list[int]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        nv, reason = nvml_probe()
        if nv is None:
            self.gpu["reason"] = reason
        else:
            self.gpu["available"] = True
            self.gpu["devices"] = gpu_inventory()
            self._spawn(self._gpu_loop, nv)
        if self.server_pid is None:
            self.rss["reason"] = "the server process is not local to the harness (no pid)"
        else:
            self._spawn(self._rss_loop)
        self._spawn(self._ps_loop)

    def _spawn(self, fn: Any, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=f"telemetry-{fn.__name__}", daemon=True)
        t.start()
        self._threads.append(t)

    def _gpu_loop(self, nv: Any) -> None:
        handles = [nv.nvmlDeviceGetHandleByIndex(d["index"]) for d in self.gpu["devices"]]
        while not self._stop.is_set():
            for dev, h in zip(self.gpu["devices"], handles, strict=True):
                try:
                    self.gpu["samples"].append({"device": dev["index"], **_nvml_sample(nv, h)})
                except nv.NVMLError as exc:
                    self.gpu["reason"] = f"sampling failed: {exc}"
                    return
            self._stop.wait(GPU_PERIOD_S)

    def _rss_loop(self) -> None:
        try:
            proc = psutil.Process(self.server_pid)
        except psutil.Error as exc:
            self.rss["reason"] = f"cannot read process {self.server_pid}: {exc}"
            return
        while not self._stop.is_set():
            try:
                total = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error as exc:
                self.rss["reason"] = f"process {self.server_pid} went away: {exc}"
                return
            self.rss["samples"].append([time.perf_counter_ns(), int(total)])
            self._stop.wait(RSS_PERIOD_S)

    def _ps_loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5.0, headers=self.headers) as client:
            while not self._stop.is_set():
                try:
                    r = client.get("/api/ps")
                    models = r.json().get("models") or [] if r.status_code == 200 else []
                    vram = sum(int(m.get("size_vram") or 0) for m in models if isinstance(m, dict))
                    self.ps.append([time.perf_counter_ns(), vram])
                except (httpx.HTTPError, ValueError, AttributeError):
                    pass  # a busy or odd target: the gap in samples shows it
                self._stop.wait(PS_PERIOD_S)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def result(self) -> dict[str, Any]:
        nv_ok = self.gpu["available"]
        if nv_ok:
            try:
                import pynvml

                pynvml.nvmlShutdown()
            except Exception:  # shutting NVML down is best effort
                pass
        return {"gpu": self.gpu, "rss": self.rss, "ps": self.ps}
