"""Concurrent clients against a served model (tritonclient): throughput, latency percentiles named as
``rn50 profile`` names them, the batch sizes Triton formed (its statistics), and every answer checked
against the PyTorch reference with the precision's parity thresholds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rn50.errors import UsageError
from rn50.serving.backend import INPUT, OUTPUT
from rn50.serving.triton_config import ARTIFACT_PARAMETER, PRECISION_PARAMETER, SHA256_PARAMETER
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable

    from rn50.metrics import OutputMetrics, Thresholds
    from rn50.runtimes.timing import LatencyStats

Protocol = Literal["http", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("http", "grpc")
SHOWN = 5  # wrong answers and errors quoted in a report (all are counted)


def client_module(protocol: str) -> Any:
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return grpcclient
    import tritonclient.http as httpclient

    return httpclient


def connect(url: str, protocol: str) -> Any:
    """A client of a live server, or a one-line error naming the URL."""
    module = client_module(protocol)
    try:
        client = module.InferenceServerClient(url)
        live = client.is_server_live()
    except Exception as e:  # tritonclient's transport errors have several types
        raise UsageError(
            f"no Triton server answers at {url} ({protocol}): {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            fix=f"start one with {cmd('serve')}, or pass {opt('url')} HOST:PORT ({opt('protocol')} grpc for a gRPC "
            "port)",
        ) from None
    if not live:
        try:
            client.get_server_metadata()
        except Exception:  # something answers on the port, but not Triton's API (a plain web server)
            raise UsageError(
                f"the server at {url} is not a Triton server (no answer to Triton's /v2 API)",
                fix=f"pass {opt('url')} the HTTP port {cmd('serve')} printed ({opt('protocol')} grpc for its gRPC "
                "port)",
            ) from None
        raise UsageError(f"the Triton server at {url} is not live", fix="see the server's log")
    return client


def wait_ready(url: str, protocol: str, model: str, timeout_s: float, poll_s: float = 0.5) -> None:
    """Wait until the server answers and ``model`` is ready (a server still starting), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = client_module(protocol).InferenceServerClient(url)
            try:
                if client.is_server_live() and client.is_model_ready(model):
                    return
            finally:
                client.close()
        except Exception:  # not up yet: connection refused, reset, or a half-started server
            pass
        if time.monotonic() >= deadline:
            return  # what is wrong is then said by connect() and model_info()
        time.sleep(poll_s)


def _ask(client: Any, what: str, model: str, protocol: str) -> dict[str, Any]:
    """A model's config or statistics as a dict: tritonclient's HTTP client answers so, its gRPC one when asked."""
    call = getattr(client, what)
    return call(model, as_json=True) if protocol == "grpc" else call(model)


def model_names(client: Any, protocol: str) -> list[str]:
    """The models the server has (empty where it does not say): from its statistics, which every model has and which
    rn50 serve leaves open (the repository index is one of the endpoints it restricts)."""
    try:
        stats = _ask(client, "get_inference_statistics", "", protocol)
    except Exception:  # a server that does not say: the message then names none
        return []
    rows = stats.get("model_stats", []) if isinstance(stats, dict) else []
    return sorted({str(r["name"]) for r in rows if isinstance(r, dict) and "name" in r})


@dataclass(frozen=True)
class ServedModelInfo:
    name: str
    max_batch_size: int
    precision: str | None  # what rn50 wrote into the model's parameters; None for a model rn50 did not write
    artifact: str | None
    sha256: str | None = None  # of the file served, where rn50 wrote the config


def model_info(client: Any, model: str, protocol: str) -> ServedModelInfo:
    try:
        ready = client.is_model_ready(model)
    except Exception:  # a transport error here is reported as "not ready" with the same fix
        ready = False
    if not ready:
        names = model_names(client, protocol)
        raise UsageError(
            f"model {model!r} is not ready on this server"
            + (f" (it has: {', '.join(names)})" if names else " (it lists no models)"),
            fix=f"pass {opt('model_name')} the name {cmd('serve')} printed (default resnet50)",
        )
    cfg = _ask(client, "get_model_config", model, protocol)
    cfg = cfg.get("config", cfg)
    inputs = cfg.get("input", [])
    if [i.get("name") for i in inputs] != [INPUT] or inputs[0].get("data_type") != "TYPE_FP32":
        raise UsageError(
            f"model {model!r} takes {[(i.get('name'), i.get('data_type')) for i in inputs]}, not one FP32 {INPUT!r}",
            fix=f"load-test a model {cmd('serve')} or {cmd('triton-repo')} wrote",
        )
    params = {k: v.get("string_value") for k, v in cfg.get("parameters", {}).items()}
    return ServedModelInfo(
        model,
        int(cfg.get("max_batch_size", 0)),
        params.get(PRECISION_PARAMETER),
        params.get(ARTIFACT_PARAMETER),
        params.get(SHA256_PARAMETER),
    )


def batch_counts(client: Any, model: str, protocol: str) -> Counter[int]:
    """Executions per batch size so far, from Triton's statistics."""
    out: Counter[int] = Counter()
    for m in _ask(client, "get_inference_statistics", model, protocol).get("model_stats", []):
        for b in m.get("batch_stats", []):
            out[int(b["batch_size"])] += int(b.get("compute_infer", {}).get("count", 0))
    return out


@dataclass(frozen=True)
class Level:
    """One concurrency level's results."""

    concurrency: int
    requests: int  # answered
    seconds: float
    throughput: float  # answered images per second of wall time
    latency: LatencyStats | None
    batches: dict[int, int]  # batch size Triton formed -> executions
    errors: int
    error_examples: tuple[str, ...]
    wrong: int  # answers outside the per-answer thresholds
    wrong_examples: tuple[str, ...]
    metrics: OutputMetrics | None  # every answer against the reference
    server_lost: str | None = None  # the server stopped answering during this level: how (its answers still count)

    @property
    def formed_batch(self) -> float | None:
        """Mean batch size per execution (images per Triton execution)."""
        runs = sum(self.batches.values())
        return sum(b * n for b, n in self.batches.items()) / runs if runs else None

    @property
    def common_batch(self) -> int | None:
        """The batch size Triton formed most images into."""
        return max(self.batches, key=lambda b: b * self.batches[b]) if self.batches else None


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    answers: list[tuple[int, np.ndarray]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server_gone: str | None = None  # a request found no server (refused, reset): the level ends there


def _no_server(e: BaseException) -> bool:
    """Whether a failed request found no server at all (rather than an error answer from one)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(e)
    gone = ("Connection refused", "failed to connect", "Connection reset", "Socket closed", "connection closed")
    return any(s in text for s in gone) or "is not healthy" in text  # the model's stub process died


def wrong_answer(logits: np.ndarray, reference: np.ndarray, limits: Thresholds) -> str | None:
    """Why one answer is wrong by the per-answer bounds of the precision's thresholds (worst-sample cosine, max
    abs: parity's own comparison and wording, on this one sample), or None."""
    from rn50.metrics import Thresholds, compare

    per_answer = Thresholds(min_cosine=limits.min_cosine, max_abs=limits.max_abs)
    return "; ".join(per_answer.failures(compare(logits[None], reference[None]))) or None


def run_level(
    url: str,
    protocol: str,
    model: str,
    concurrency: int,
    images: np.ndarray,
    *,
    duration_s: float | None,
    requests: int | None,
    timeout_s: float,
) -> tuple[_Tally, float]:
    """``concurrency`` clients, each sending one image per request, back to back, until the duration or the
    request count is reached. Returns the tally and the wall time."""
    module = client_module(protocol)
    tally = _Tally()
    issued = iter(range(requests)) if requests is not None else None
    issued_lock = threading.Lock()
    deadline = time.perf_counter() + duration_s if duration_s is not None else None

    def next_index(worker: int, k: int) -> int | None:
        if tally.server_gone is not None:
            return None
        if issued is not None:
            with issued_lock:
                return next(issued, None)
        return None if time.perf_counter() >= (deadline or 0.0) else worker + k * concurrency

    def client_loop(worker: int) -> None:
        client = module.InferenceServerClient(
            url, **({"network_timeout": timeout_s, "connection_timeout": timeout_s} if protocol == "http" else {})
        )
        try:
            k = 0
            while (n := next_index(worker, k)) is not None:
                k += 1
                i = n % len(images)
                request = module.InferInput(INPUT, [1, *images.shape[1:]], "FP32")
                request.set_data_from_numpy(images[i : i + 1])
                start = time.perf_counter()
                try:
                    kwargs = {"client_timeout": timeout_s} if protocol == "grpc" else {}
                    y = client.infer(model, [request], **kwargs).as_numpy(OUTPUT)
                except Exception as e:  # the server's error response, or a transport failure
                    why = str(e).splitlines()[0] if str(e) else type(e).__name__
                    with tally.lock:
                        tally.errors.append(why)
                        if _no_server(e) and tally.server_gone is None:
                            tally.server_gone = why
                    continue
                ms = (time.perf_counter() - start) * 1000.0
                with tally.lock:
                    tally.latencies_ms.append(ms)
                    tally.answers.append((i, np.asarray(y)[0]))
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, args=(w,), daemon=True) for w in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.perf_counter() - t0


def measure(
    url: str,
    protocol: str,
    model: str,
    concurrency: int,
    images: np.ndarray,
    reference: np.ndarray,
    limits: Thresholds,
    *,
    duration_s: float | None,
    requests: int | None,
    timeout_s: float,
) -> tuple[Level, list[tuple[np.ndarray, np.ndarray]]]:
    """One level, and its (answer, reference) pairs of the right shape."""
    from rn50.metrics import compare
    from rn50.runtimes.timing import summarize

    stats_client = connect(url, protocol)
    try:
        before = batch_counts(stats_client, model, protocol)
        tally, seconds = run_level(
            url, protocol, model, concurrency, images, duration_s=duration_s, requests=requests, timeout_s=timeout_s
        )
        lost = tally.server_gone
        try:
            formed = batch_counts(stats_client, model, protocol) - before
        except Exception as e:  # the server went away during the level (killed, crashed): a failed level, not a crash
            formed, lost = Counter(), lost or (str(e).splitlines()[0] if str(e) else type(e).__name__)
    finally:
        stats_client.close()
    wrong = []
    for i, y in tally.answers:
        why = (
            wrong_answer(y, reference[i], limits)
            if y.shape == reference[i].shape
            else f"shape {y.shape}, expected {reference[i].shape}"
        )
        if why:
            wrong.append(f"image {i}: {why}")
    answered = len(tally.answers)
    pairs = [(y, reference[i]) for i, y in tally.answers if y.shape == reference[i].shape]
    metrics = compare(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])) if pairs else None
    return Level(
        concurrency,
        answered,
        seconds,
        answered / seconds if seconds > 0 else 0.0,
        summarize(tally.latencies_ms, batch=1) if tally.latencies_ms else None,
        dict(sorted(formed.items())),
        len(tally.errors),
        tuple(dict.fromkeys(tally.errors))[:SHOWN],
        len(wrong),
        tuple(wrong[:SHOWN]),
        metrics,
        lost,
    ), pairs


def run(
    url: str,
    protocol: str,
    model: str,
    levels: tuple[int, ...],
    images: np.ndarray,
    reference: np.ndarray,
    limits: Thresholds,
    *,
    duration_s: float | None,
    requests: int | None,
    timeout_s: float,
    progress: Callable[[str], None],
) -> tuple[list[Level], OutputMetrics | None]:
    """Every level in turn; and every answer of every level against the reference (the aggregate bounds, mean
    cosine and top-1 agreement, are judged on these)."""
    from rn50.metrics import compare

    out, pairs = [], []
    for c in levels:
        progress(f"{c} concurrent client(s)")
        level, answered = measure(
            url,
            protocol,
            model,
            c,
            images,
            reference,
            limits,
            duration_s=duration_s,
            requests=requests,
            timeout_s=timeout_s,
        )
        out.append(level)
        pairs += answered
        if level.server_lost is not None:  # no server to load any further
            break
    overall = compare(np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])) if pairs else None
    return out, overall
