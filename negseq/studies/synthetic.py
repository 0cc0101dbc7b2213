"""A synthetic interaction log of any size with planted structure in which negative feedback is informative.

    python -m negseq.synthetic --events 20000000 --out log.parquet [--users N] [--items 30000] [--negative_share 0.3] [--seed 0]
    python -m negseq.synthetic --events 250000000 --format zvuk --out DIR_or_zvuk-interactions.parquet

``--format zvuk`` writes a Zvuk-shaped log instead (:func:`write_zvuk`): plays with sessions, in
chunks of users, so that memory stays flat whatever the size.

The world: items form clusters, and inside a cluster the items form a ring (a chain that wraps
around). Every user has a few *liked* clusters and a few other *disliked* clusters. Events
alternate at random between two streams:

- liked events (rating 4 or 5): the next liked item is the successor, on its ring, of the user's
  previous liked item, except that with probability ``jump`` the user jumps to a random item of
  one of their liked clusters (and with probability ``noise`` the event is any random item);
- disliked events (rating 1, 2 or 3): the same walk over the user's disliked clusters.

So the next liked item depends on the recent liked items, and the disliked items tell which
clusters the user will keep disliking: a model that learns from the whole mixed history
(SASRec) predicts the next disliked item as readily as the next liked one, while one that
separates the signs (PNFRec) can keep disliked clusters out of its recommendations.

The log has the generic columns ``user_id, item_id, rating, timestamp`` (integers; threshold 4,
the default, separates the signs), rows in time order (or by user, or shuffled: ``order``). Users' event counts are heavy-tailed
(log-normal, at least ``min_events`` each) and sum exactly to ``events``; timestamps are seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl

from negseq.errors import DataError

EVENTS_PER_USER = 133  # 20M events -> ~150k users, as in the scale target
START = 1_600_000_000  # 2020-09-13, seconds


@dataclass
class SyntheticLog:
    """The log and the planted truth behind it.

    ``events``: ``user_id, item_id, rating, timestamp`` in time order. ``item_cluster[i]`` is the
    cluster of item id ``i`` and ``next_item[i]`` its successor on the cluster's ring (index 0
    unused, -1); ``liked[u]`` and ``disliked[u]`` are the cluster ids of user id ``u`` (index 0 unused).
    """

    events: pl.DataFrame
    item_cluster: np.ndarray
    next_item: np.ndarray
    liked: np.ndarray
    disliked: np.ndarray


def _distinct_clusters(rng: np.random.Generator, n_users: int, k: int, popularity: np.ndarray) -> np.ndarray:
    """``(n_users, k)`` cluster ids, distinct within each row, drawn by ``popularity``."""
    picked = rng.choice(len(popularity), size=(n_users, k), p=popularity)
    while True:
        ordered = np.sort(picked, axis=1)
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1) if k > 1 else np.zeros(n_users, dtype=bool)
        if not clash.any():
            return picked
        picked[clash] = rng.choice(len(popularity), size=(int(clash.sum()), k), p=popularity)


def _walk(
    rng: np.random.Generator,
    owner: np.ndarray,
    clusters: np.ndarray,
    ring: np.ndarray,
    ring_size: np.ndarray,
    jump: float,
) -> np.ndarray:
    """Items of one stream: ``owner[e]`` (non-decreasing) is the user of event e, ``clusters[u]`` their clusters.

    A segment starts at each user's first event and at each jump; inside a segment the walk
    advances one step along the ring of the segment's cluster.
    """
    n = len(owner)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = rng.random(n) < jump
    starts[0] = True
    starts[1:] |= owner[1:] != owner[:-1]
    segment_first = np.flatnonzero(starts)
    segment = np.cumsum(starts) - 1
    segment_owner = owner[segment_first]
    cluster = clusters[segment_owner, rng.integers(0, clusters.shape[1], size=len(segment_first))]
    offset0 = (rng.random(len(segment_first)) * ring_size[cluster]).astype(np.int64)
    step = np.arange(n, dtype=np.int64) - segment_first[segment]
    seg_cluster = cluster[segment]
    position = (offset0[segment] + step) % ring_size[seg_cluster]
    return ring[seg_cluster, position]


def synthesize(
    events: int = 100_000,
    users: Optional[int] = None,
    items: int = 30_000,
    clusters: Optional[int] = None,
    negative_share: float = 0.3,
    liked_clusters: int = 3,
    disliked_clusters: int = 2,
    jump: float = 0.1,
    noise: float = 0.05,
    min_events: int = 5,
    spread: float = 1.0,
    mean_gap: float = 6 * 3600.0,
    start: int = START,
    days: float = 365.0,
    order: str = "time",
    seed: int = 0,
) -> SyntheticLog:
    """Generate a planted log; see the module docstring.

    Args:
        events: total number of events (exact).
        users: number of users (default ``events // 133``).
        items: number of items (ids 1..items).
        clusters: number of item clusters (default ``items // 100``, at least liked + disliked).
        negative_share: mean share of disliked events (varies per user, Beta with concentration 10).
        liked_clusters: liked clusters per user (disjoint from the disliked ones).
        disliked_clusters: disliked clusters per user.
        jump: probability that a stream leaves its ring walk for a random item of the user's clusters.
        noise: probability that a liked event is a random item of any cluster instead.
        min_events: fewest events of a user; the rest is spread log-normally (sigma ``spread``).
        mean_gap: mean seconds between a user's consecutive events (exponential gaps).
        start: epoch seconds; users start uniformly within ``days`` after it.
        days: the span of the users' start times.
        order: row order of the log: ``time`` (a server log), ``user`` (by user, then time, as
            MovieLens dumps) or ``random``.
        seed: random seed; the same arguments give the same log.
    """
    users = users if users is not None else max(1, events // EVENTS_PER_USER)
    clusters = clusters if clusters is not None else max(liked_clusters + disliked_clusters, items // 100)
    if users < 1 or events < users * min_events:
        raise DataError(f"synthetic log: {events} events cannot give {users} users at least {min_events} events each")
    if clusters < liked_clusters + disliked_clusters or items < clusters:
        raise DataError(
            f"synthetic log: {items} items in {clusters} clusters cannot give each user {liked_clusters} liked "
            f"and {disliked_clusters} disliked clusters; expected items >= clusters >= liked + disliked"
        )
    if order not in ("time", "user", "random"):
        raise DataError(f"synthetic log: unknown order {order!r}; expected 'time', 'user' or 'random'")
    if not 0.0 <= negative_share < 1.0:
        raise DataError(f"synthetic log: negative_share must be in [0, 1), got {negative_share}")
    rng = np.random.default_rng(seed)

    # items: a random id for every (cluster, ring position); clusters of near-equal size
    ring_size = np.full(clusters, items // clusters, dtype=np.int64)
    ring_size[: items % clusters] += 1
    ids = rng.permutation(items).astype(np.int64) + 1
    ring = np.zeros((clusters, int(ring_size.max())), dtype=np.int64)
    cluster_of_slot = np.repeat(np.arange(clusters), ring_size)
    slot = np.arange(items) - np.repeat(np.cumsum(ring_size) - ring_size, ring_size)
    ring[cluster_of_slot, slot] = ids
    item_cluster = np.full(items + 1, -1, dtype=np.int64)
    item_cluster[ids] = cluster_of_slot
    next_item = np.full(items + 1, -1, dtype=np.int64)
    next_item[ids] = ring[cluster_of_slot, (slot + 1) % ring_size[cluster_of_slot]]

    # users: clusters by a Zipf-like popularity, so that item popularity is skewed
    popularity = 1.0 / np.arange(1, clusters + 1) ** 0.7
    popularity = rng.permutation(popularity / popularity.sum())
    chosen = _distinct_clusters(rng, users, liked_clusters + disliked_clusters, popularity)
    liked, disliked = chosen[:, :liked_clusters], chosen[:, liked_clusters:]

    # how many events each user has: exactly `events` in all, heavy-tailed
    weights = rng.lognormal(0.0, spread, size=users)
    lengths = min_events + rng.multinomial(events - users * min_events, weights / weights.sum())
    user = np.repeat(np.arange(users, dtype=np.int64), lengths)
    concentration = 10.0
    share = rng.beta(max(negative_share, 1e-6) * concentration, (1 - negative_share) * concentration, size=users) if negative_share > 0 else np.zeros(users)
    negative = rng.random(events) < share[user]

    item = np.empty(events, dtype=np.int64)
    item[~negative] = _walk(rng, user[~negative], liked, ring, ring_size, jump)
    item[negative] = _walk(rng, user[negative], disliked, ring, ring_size, jump)
    random_pick = ~negative & (rng.random(events) < noise)
    item[random_pick] = rng.integers(1, items + 1, size=int(random_pick.sum()))

    rating = np.where(negative, rng.integers(1, 4, size=events), rng.integers(4, 6, size=events)).astype(np.int8)
    gaps = 1 + rng.exponential(mean_gap, size=events).astype(np.int64)
    first = np.cumsum(lengths) - lengths
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first] - gaps[first], lengths)  # restart the clock at each user's first event
    begin = start + (rng.random(users) * days * 86400).astype(np.int64)
    timestamp = begin[user] + elapsed
    del gaps, elapsed, random_pick

    frame = pl.DataFrame({"user_id": user + 1, "item_id": item, "rating": rating, "timestamp": timestamp})
    if order == "time":
        frame = frame.sort("timestamp", maintain_order=True)
    elif order == "random":
        frame = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    no_user = np.zeros((1, liked_clusters), dtype=np.int64) - 1
    return SyntheticLog(
        events=frame,
        item_cluster=item_cluster,
        next_item=next_item,
        liked=np.concatenate([no_user, liked]),
        disliked=np.concatenate([no_user[:, :disliked_clusters], disliked]),
    )


def generate(events: int = 100_000, **kwargs) -> pl.DataFrame:
    """The events of :func:`synthesize` alone: ``user_id, item_id, rating, timestamp``."""
    return synthesize(events, **kwargs).events


def write(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write by extension: ``.parquet``/``.pq``, ``.csv``, ``.tsv`` (optionally ``.gz`` for the text ones)."""
    path = Path(path)
    name = path.name.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith((".parquet", ".pq")):
        frame.write_parquet(path)
    elif name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        separator = "\t" if ".tsv" in name else ","
        if name.endswith(".gz"):
            import gzip

            with gzip.open(path, "wb", compresslevel=3) as handle:
                frame.write_csv(handle, separator=separator)
        else:
            frame.write_csv(path, separator=separator)
    else:
        raise DataError(f"{path}: cannot tell the output format from the name; expected .parquet, .pq, .csv, .tsv (.gz)")
    return path


ZVUK_EVENTS_PER_USER = 250  # 250M plays -> 1M users, the scale target


def write_zvuk(
    events: int,
    out: str | Path,
    users: Optional[int] = None,
    items: int = 500_000,
    skip_share: float = 0.3,
    replay: float = 0.1,
    session_plays: float = 12.0,
    min_events: int = 5,
    chunk_events: int = 4_000_000,
    seed: int = 0,
) -> dict:
    """Write a Zvuk-shaped log of exactly ``events`` plays: ``user_id, session_id, datetime, track_id, play_duration``.

    Columns and types are those of ``zvuk-interactions.parquet`` (int32 ids, datetime[ns], int32
    seconds). Tracks follow a Zipf-like popularity (no planted structure: this log is for scale);
    a play repeats the user's previous track with probability ``replay`` (such plays are summed
    into one event per session by ``--data.format zvuk``); a new session starts with probability
    ``1 / session_plays``; ``skip_share`` of plays last under 30 s (negative feedback). Users are
    written in chunks of about ``chunk_events`` plays, each chunk in time order, so memory is
    flat: the per-user counts and the popularity table are all that is kept. ``out``: a
    ``.parquet`` file, or a directory that gets ``zvuk-interactions.parquet``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = users if users is not None else max(1, events // ZVUK_EVENTS_PER_USER)
    if users < 1 or events < users * min_events:
        raise DataError(f"synthetic zvuk log: {events} plays cannot give {users} users at least {min_events} plays each")
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".pq"):
        path = path / "zvuk-interactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, size=users)
    lengths = min_events + rng.multinomial(events - users * min_events, weights / weights.sum())
    del weights
    popularity = np.cumsum(1.0 / np.arange(1, items + 1) ** 0.8)
    popularity /= popularity[-1]  # CDF over popularity ranks
    track_of_rank = (rng.permutation(items) + 1).astype(np.int32)
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(chunk_events, events, chunk_events), side="left") + 1
    bounds = [0, *sorted(set(cuts.tolist()) - {0, users}), users]
    schema = pa.schema([
        ("user_id", pa.int32()), ("session_id", pa.int32()), ("datetime", pa.timestamp("ns")),
        ("track_id", pa.int32()), ("play_duration", pa.int32()),
    ])
    start_ns = np.int64(START) * 1_000_000_000
    sessions = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
            chunk_rng = np.random.default_rng([seed, chunk])
            counts = lengths[low:high]
            n = int(counts.sum())
            user = np.repeat(np.arange(low + 1, high + 1, dtype=np.int32), counts)  # (n,)
            first = np.zeros(n, dtype=bool)
            first[np.cumsum(counts) - counts] = True
            track = track_of_rank[np.searchsorted(popularity, chunk_rng.random(n))]
            repeat = (chunk_rng.random(n) < replay) & ~first
            source = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))  # the last play that is not a repeat
            track = track[source]
            new_session = first | ((chunk_rng.random(n) < 1.0 / session_plays) & ~repeat)
            session = (sessions + np.cumsum(new_session)).astype(np.int32)
            sessions = int(session[-1])
            skipped = chunk_rng.random(n) < skip_share
            duration = np.where(skipped, chunk_rng.integers(0, 30, size=n), chunk_rng.integers(30, 301, size=n)).astype(np.int32)
            gap = np.where(new_session, chunk_rng.exponential(86_400.0, size=n), duration + 1).astype(np.int64)  # seconds
            elapsed = np.cumsum(gap)
            elapsed -= np.repeat(elapsed[first] - gap[first], counts)  # each user's clock starts at their first play
            begin = (chunk_rng.random(high - low) * 365 * 86_400).astype(np.int64)
            stamp = start_ns + (np.repeat(begin, counts) + elapsed) * 1_000_000_000
            order = np.argsort(stamp, kind="stable")
            del gap, elapsed, repeat, source, skipped, first
            table = pa.table(
                [user[order], session[order], pa.array(stamp[order], type=pa.timestamp("ns")), track[order], duration[order]],
                schema=schema,
            )
            writer.write_table(table)
            del table, user, session, track, duration, stamp, order
    return {"out": str(path), "events": events, "users": users, "items": items}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m negseq.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="total events (exact)")
    parser.add_argument("--out", required=True, help="output file: .parquet, .csv or .tsv (.gz); for zvuk a .parquet file or a directory")
    parser.add_argument("--format", choices=["generic", "zvuk"], default="generic", help="generic ratings, or Zvuk-shaped plays written in chunks")
    parser.add_argument("--users", type=int, default=None, help=f"users (default events // {EVENTS_PER_USER}; zvuk: // {ZVUK_EVENTS_PER_USER})")
    parser.add_argument("--items", type=int, default=None, help="items (default 30,000; zvuk: 500,000)")
    parser.add_argument("--clusters", type=int, default=None, help="item clusters (default items // 100)")
    parser.add_argument("--negative_share", type=float, default=0.3)
    parser.add_argument("--liked_clusters", type=int, default=3)
    parser.add_argument("--disliked_clusters", type=int, default=2)
    parser.add_argument("--jump", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--min_events", type=int, default=5)
    parser.add_argument("--days", type=float, default=365.0)
    parser.add_argument("--order", choices=["time", "user", "random"], default="time", help="row order of the file")
    parser.add_argument("--seed", type=int, default=0)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    started = time.perf_counter()
    if args.pop("format") == "zvuk":
        items = args["items"] or 500_000
        summary = write_zvuk(args["events"], out, users=args["users"], items=items, min_events=args["min_events"], seed=args["seed"])
        print(json.dumps({**summary, "seconds": round(time.perf_counter() - started, 2)}))
        return
    args["items"] = args["items"] or 30_000
    frame = generate(**args)
    path = write(frame, out)
    print(json.dumps({
        "out": str(path), "events": frame.height, "users": frame["user_id"].n_unique(), "items": frame["item_id"].n_unique(),
        "negative_share": round(float((frame["rating"] < 4).mean()), 4), "seconds": round(time.perf_counter() - started, 2),
    }))

