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


def _check_log_arguments(
    events: int,
    users: int,
    items: int,
    clusters: int,
    liked_clusters: int,
    disliked_clusters: int,
    min_events: int,
    negative_share: float,
    order: str,
) -> None:
    """Reject arguments that cannot give a log before anything is drawn, with a message that names the conflict."""
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


def _item_rings(rng: np.random.Generator, items: int, clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rings the walks step along (``ring[c, :ring_size[c]]``: random ids, clusters of near-equal size), and each item's cluster and successor."""
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
    return ring, ring_size, item_cluster, next_item


def _user_clusters(
    rng: np.random.Generator, users: int, clusters: int, liked_clusters: int, disliked_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's liked and disliked clusters, disjoint, drawn by a Zipf-like popularity so that item popularity is skewed."""
    popularity = 1.0 / np.arange(1, clusters + 1) ** 0.7
    popularity = rng.permutation(popularity / popularity.sum())
    chosen = _distinct_clusters(rng, users, liked_clusters + disliked_clusters, popularity)
    return chosen[:, :liked_clusters], chosen[:, liked_clusters:]


def _event_counts(rng: np.random.Generator, users: int, events: int, min_events: int, spread: float) -> np.ndarray:
    """Events per user, heavy-tailed like real logs: ``min_events`` each plus a log-normal share (sigma ``spread``) of the rest, ``events`` in all."""
    weights = rng.lognormal(0.0, spread, size=users)
    return min_events + rng.multinomial(events - users * min_events, weights / weights.sum())


def _negative_events(rng: np.random.Generator, user: np.ndarray, users: int, negative_share: float) -> np.ndarray:
    """Which events are disliked; each user's share is Beta around ``negative_share`` (concentration 10), so that users differ."""
    concentration = 10.0
    share = rng.beta(max(negative_share, 1e-6) * concentration, (1 - negative_share) * concentration, size=users) if negative_share > 0 else np.zeros(users)
    return rng.random(len(user)) < share[user]


def _walked_items(
    rng: np.random.Generator,
    user: np.ndarray,
    negative: np.ndarray,
    liked: np.ndarray,
    disliked: np.ndarray,
    ring: np.ndarray,
    ring_size: np.ndarray,
    jump: float,
    noise: float,
    items: int,
) -> np.ndarray:
    """The item of each event: a ring walk over the user's liked clusters and one over the disliked, with ``noise`` random liked items."""
    item = np.empty(len(user), dtype=np.int64)
    item[~negative] = _walk(rng, user[~negative], liked, ring, ring_size, jump)
    item[negative] = _walk(rng, user[negative], disliked, ring, ring_size, jump)
    random_pick = ~negative & (rng.random(len(user)) < noise)
    item[random_pick] = rng.integers(1, items + 1, size=int(random_pick.sum()))
    return item


def _timestamps(rng: np.random.Generator, lengths: np.ndarray, mean_gap: float, start: int, days: float) -> np.ndarray:
    """Epoch seconds, in order within each user: a start uniform within ``days`` after ``start``, then exponential gaps of at least 1 s."""
    gaps = 1 + rng.exponential(mean_gap, size=int(lengths.sum())).astype(np.int64)
    first = np.cumsum(lengths) - lengths
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first] - gaps[first], lengths)  # restart the clock at each user's first event
    begin = start + (rng.random(len(lengths)) * days * 86400).astype(np.int64)
    return np.repeat(begin, lengths) + elapsed


def _in_order(frame: pl.DataFrame, order: str, seed: int) -> pl.DataFrame:
    """The rows in the requested ``order``; they are generated by user, then time."""
    if order == "time":
        return frame.sort("timestamp", maintain_order=True)
    if order == "random":
        return frame.sample(fraction=1.0, shuffle=True, seed=seed)
    return frame


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
    _check_log_arguments(events, users, items, clusters, liked_clusters, disliked_clusters, min_events, negative_share, order)
    rng = np.random.default_rng(seed)
    ring, ring_size, item_cluster, next_item = _item_rings(rng, items, clusters)
    liked, disliked = _user_clusters(rng, users, clusters, liked_clusters, disliked_clusters)
    lengths = _event_counts(rng, users, events, min_events, spread)
    user = np.repeat(np.arange(users, dtype=np.int64), lengths)
    negative = _negative_events(rng, user, users, negative_share)
    item = _walked_items(rng, user, negative, liked, disliked, ring, ring_size, jump, noise, items)
    rating = np.where(negative, rng.integers(1, 4, size=events), rng.integers(4, 6, size=events)).astype(np.int8)
    timestamp = _timestamps(rng, lengths, mean_gap, start, days)
    frame = pl.DataFrame({"user_id": user + 1, "item_id": item, "rating": rating, "timestamp": timestamp})
    def with_no_user(clusters_of_users: np.ndarray) -> np.ndarray:  # row 0 for user id 0, which no event has
        return np.concatenate([np.full((1, clusters_of_users.shape[1]), -1, dtype=np.int64), clusters_of_users])

    return SyntheticLog(
        events=_in_order(frame, order, seed), item_cluster=item_cluster, next_item=next_item, liked=with_no_user(liked), disliked=with_no_user(disliked),
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


def _zvuk_path(out: str | Path) -> Path:
    """The file to write, its folder created: ``out`` if it names a parquet file, else ``zvuk-interactions.parquet`` inside it."""
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".pq"):
        path = path / "zvuk-interactions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _zvuk_schema():
    """The columns and types of ``zvuk-interactions.parquet``, which the written log imitates."""
    import pyarrow as pa

    return pa.schema([
        ("user_id", pa.int32()), ("session_id", pa.int32()), ("datetime", pa.timestamp("ns")),
        ("track_id", pa.int32()), ("play_duration", pa.int32()),
    ])


def _track_popularity(rng: np.random.Generator, items: int) -> tuple[np.ndarray, np.ndarray]:
    """A Zipf-like CDF over popularity ranks and the track id of each rank, so that a uniform draw picks a track by popularity."""
    popularity = np.cumsum(1.0 / np.arange(1, items + 1) ** 0.8)
    popularity /= popularity[-1]
    return popularity, (rng.permutation(items) + 1).astype(np.int32)


def _chunk_bounds(lengths: np.ndarray, chunk_events: int) -> list[int]:
    """User indices that cut the users into chunks of about ``chunk_events`` plays, so that memory stays flat; no user is split."""
    ends = np.cumsum(lengths)
    users = len(lengths)
    cuts = np.searchsorted(ends, np.arange(chunk_events, int(ends[-1]), chunk_events), side="left") + 1
    return [0, *sorted(set(cuts.tolist()) - {0, users}), users]


def _zvuk_tracks(
    rng: np.random.Generator, first: np.ndarray, popularity: np.ndarray, track_of_rank: np.ndarray, replay: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tracks by popularity, and which plays are replays (of the user's previous track, never a first play), which stay in the session."""
    n = len(first)
    track = track_of_rank[np.searchsorted(popularity, rng.random(n))]
    repeat = (rng.random(n) < replay) & ~first
    source = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))  # the last play that is not a repeat
    return track[source], repeat


def _zvuk_stamps(
    rng: np.random.Generator, counts: np.ndarray, first: np.ndarray, new_session: np.ndarray, duration: np.ndarray
) -> np.ndarray:
    """Nanosecond timestamps: users start within a year after ``START``, sessions a day apart on average, plays back to back."""
    gap = np.where(new_session, rng.exponential(86_400.0, size=len(first)), duration + 1).astype(np.int64)  # seconds
    elapsed = np.cumsum(gap)
    elapsed -= np.repeat(elapsed[first] - gap[first], counts)  # each user's clock starts at their first play
    begin = (rng.random(len(counts)) * 365 * 86_400).astype(np.int64)
    return np.int64(START) * 1_000_000_000 + (np.repeat(begin, counts) + elapsed) * 1_000_000_000


def _write_zvuk_chunk(
    writer,
    rng: np.random.Generator,
    low: int,
    counts: np.ndarray,
    sessions: int,
    popularity: np.ndarray,
    track_of_rank: np.ndarray,
    replay: float,
    session_plays: float,
    skip_share: float,
) -> int:
    """Write the plays of user ids ``low + 1 ..`` (``counts[i]`` each) in time order; returns the last session id, for the next chunk to go on from."""
    import pyarrow as pa

    n = int(counts.sum())
    user = np.repeat(np.arange(low + 1, low + len(counts) + 1, dtype=np.int32), counts)
    first = np.zeros(n, dtype=bool)
    first[np.cumsum(counts) - counts] = True
    track, repeat = _zvuk_tracks(rng, first, popularity, track_of_rank, replay)
    new_session = first | ((rng.random(n) < 1.0 / session_plays) & ~repeat)
    session = (sessions + np.cumsum(new_session)).astype(np.int32)
    skipped = rng.random(n) < skip_share
    duration = np.where(skipped, rng.integers(0, 30, size=n), rng.integers(30, 301, size=n)).astype(np.int32)
    stamp = _zvuk_stamps(rng, counts, first, new_session, duration)
    order = np.argsort(stamp, kind="stable")
    columns = [user[order], session[order], pa.array(stamp[order], type=pa.timestamp("ns")), track[order], duration[order]]
    writer.write_table(pa.table(columns, schema=writer.schema))
    return int(session[-1])


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
    import pyarrow.parquet as pq

    users = users if users is not None else max(1, events // ZVUK_EVENTS_PER_USER)
    if users < 1 or events < users * min_events:
        raise DataError(f"synthetic zvuk log: {events} plays cannot give {users} users at least {min_events} plays each")
    path = _zvuk_path(out)
    rng = np.random.default_rng(seed)
    lengths = _event_counts(rng, users, events, min_events, 1.0)
    popularity, track_of_rank = _track_popularity(rng, items)
    bounds = _chunk_bounds(lengths, chunk_events)
    sessions = 0
    with pq.ParquetWriter(path, _zvuk_schema()) as writer:
        for chunk, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
            chunk_rng = np.random.default_rng([seed, chunk])
            sessions = _write_zvuk_chunk(writer, chunk_rng, low, lengths[low:high], sessions, popularity, track_of_rank, replay, session_plays, skip_share)
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
