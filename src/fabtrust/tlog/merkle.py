"""RFC 9162 Merkle tree hashing, compact ranges and proofs. Pure: bytes in, bytes out, no I/O.

Names follow RFC 9162 section 2.1: the Merkle Tree Hash ``MTH``, the inclusion path ``PATH`` (2.1.3)
and the consistency proof ``PROOF``/``SUBPROOF`` (2.1.4). Hashing is the RFC 6962/9162 scheme with
SHA-256 and domain separation: leaves are ``HASH(0x00 || data)``, interior nodes
``HASH(0x01 || left || right)``.

Addressing: the node at ``(level, index)`` is the root of the *complete* subtree over the leaves
``[index << level, (index + 1) << level)``; level 0 holds the leaf hashes. Proof generation reads
complete nodes through a caller-supplied ``node(level, index)`` callback (a table or tile read in the
persistence layer) and derives every right-edge, incomplete subtree from them itself, so it calls
``node`` O(log n) times.

The *frontier* (a compact range from the left edge) of a tree of ``size`` leaves is the list of the
roots of its maximal complete subtrees, left to right: one per set bit of ``size``, largest first.

Generation raises :class:`InvalidInput` for arguments the RFC does not define. Verification raises
:class:`VerificationFailed` on any failure, malformed input included, and never returns a bool.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from itertools import repeat

from fabtrust.errors import InvalidInput, VerificationFailed

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "NodeReader",
    "consistency_proof",
    "frontier_extend",
    "frontier_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 2.1.1: the hash of an empty list is the hash of an empty string, MTH({}) = HASH().
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]
"""``node(level, index)``: the hash of the complete subtree at ``(level, index)``."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 2.1.1: ``MTH({d(0)}) = HASH(0x00 || d(0))``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 2.1.1: ``MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``."""
    return _sha256(b"\x01" + left + right).digest()


# --- building -----------------------------------------------------------------------------------


def _check_hash_list(hashes: Sequence[bytes], what: str) -> None:
    """Every element is a ``bytes`` of ``HASH_SIZE``; ``set(map(...))`` keeps the check at C speed."""
    if not hashes:
        return
    if set(map(type, hashes)) != {bytes} or set(map(len, hashes)) != {HASH_SIZE}:
        raise InvalidInput(f"{what} must all be {HASH_SIZE}-byte hashes")


def _check_size(size: int, what: str = "tree size") -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput(f"{what} must be a non-negative integer")


def _extend(
    size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes], stride: int | None
) -> tuple[list[bytes], list[tuple[int, int, list[bytes]]]]:
    """Append ``leaf_hashes`` to the tree described by ``(size, frontier)``, one level at a time.

    Returns the new frontier and, when ``stride`` is set, the runs of nodes completed at every level
    divisible by ``stride`` as ``(level, first index, hashes)``. Working level by level lets each level
    be one list comprehension over pairs, which keeps the Python overhead per leaf small.
    """
    sha = _sha256
    runs: list[tuple[int, int, list[bytes]]] = []
    leftovers: list[bytes] = []  # new frontier elements, lowest level first
    current: list[bytes] = list(leaf_hashes)  # nodes new at this level; the first has index size >> level
    level = 0
    while current:
        if stride is not None and level % stride == 0:
            runs.append((level, size >> level, current))
        # When bit L of size is set, its frontier element is a left child still waiting for a sibling;
        # the frontier lists one element per set bit, highest bit first.
        row = [frontier[(size >> (level + 1)).bit_count()], *current] if size >> level & 1 else current
        if len(row) & 1:
            # Odd count: the last node has no sibling yet and joins the new frontier.
            leftovers.append(row[-1])
        pairs = iter(row)
        current = [sha(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]
        level += 1
    # Nothing new from this level up: those frontier elements are unchanged.
    new_frontier = list(frontier[: (size >> level).bit_count()])
    new_frontier.extend(reversed(leftovers))
    return new_frontier, runs


def _check_extend(size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes], stride: int) -> None:
    _check_size(size)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise InvalidInput("stride must be a positive integer")
    if len(frontier) != size.bit_count():
        raise InvalidInput(
            f"a tree of {size} leaves has a frontier of {size.bit_count()} hashes, got {len(frontier)}"
        )
    _check_hash_list(frontier, "frontier elements")
    _check_hash_list(leaf_hashes, "leaf hashes")


def frontier_extend(
    size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes], stride: int = 8
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append ``leaf_hashes`` to a tree of ``size`` leaves given by its ``frontier``.

    Returns ``(new_frontier, completed)``: ``completed`` lists every complete subtree
    ``(level, index, hash)`` that became complete during this call and whose level is a multiple of
    ``stride`` (so every leaf, at level 0), in order of completion: a node completes when its last
    leaf is appended, after the lower nodes that the same leaf completes.
    """
    _check_extend(size, frontier, leaf_hashes, stride)
    new_frontier, runs = _extend(size, frontier, leaf_hashes, stride)
    if not runs:
        return new_frontier, []
    # Level 0 is always recorded and, being the leaves, is in completion order already.
    _, first_leaf, new_leaves = runs[0]
    leaves = list(zip(repeat(0), range(first_leaf, first_leaf + len(new_leaves)), new_leaves))
    higher = [(lv, first + offset, h) for lv, first, hashes in runs[1:] for offset, h in enumerate(hashes)]
    if not higher:
        return new_frontier, leaves
    # Node (L, i) completes with leaf ((i + 1) << L) - 1; ties go to the lower level.
    higher.sort(key=lambda item: ((item[1] + 1) << item[0], item[0]))
    completed: list[tuple[int, int, bytes]] = []
    done = 0  # leaves of this call already placed
    for item in higher:
        through = ((item[1] + 1) << item[0]) - size
        if through > done:
            completed.extend(leaves[done:through])
            done = through
        completed.append(item)
    completed.extend(leaves[done:])
    return new_frontier, completed


def frontier_extend_runs(
    size: int, frontier: Sequence[bytes], leaf_hashes: Sequence[bytes], stride: int = 8
) -> tuple[list[bytes], list[tuple[int, int, list[bytes]]]]:
    """Like :func:`frontier_extend`, but completed nodes come as runs, one per level divisible by
    ``stride``: ``(level, index of the first new node, new nodes left to right)``. This is the shape
    tile storage wants, without the per-node tuples (the log's append path uses it)."""
    _check_extend(size, frontier, leaf_hashes, stride)
    return _extend(size, frontier, leaf_hashes, stride)


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """Root hash of the tree whose frontier this is: fold right to left (RFC 9162 2.1.1, where ``k``
    is the largest power of two below ``n``, so the left child is always the largest complete subtree).
    """
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes (RFC 9162 2.1.1); the empty list gives :data:`EMPTY_ROOT`."""
    _check_hash_list(leaf_hashes, "leaf hashes")
    frontier, _ = _extend(0, (), leaf_hashes, None)
    return frontier_root(frontier)


# --- proof generation ---------------------------------------------------------------------------


def _read(node: NodeReader, level: int, index: int) -> bytes:
    h = node(level, index)
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise InvalidInput(f"node({level}, {index}) did not return a {HASH_SIZE}-byte hash")
    return h


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162 2.1.1: ``k`` is the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(start: int, end: int, node: NodeReader) -> bytes:
    """MTH of the leaves ``[start, end)``, built from at most log2(end - start) + 1 complete nodes.

    ``start`` must be a multiple of the largest power of two not above ``end - start``, which holds for
    every subtree that the RFC 9162 recursion visits; the range then splits into aligned complete
    subtrees, largest first, whose right fold is the MTH.
    """
    _check_size(start, "start")
    _check_size(end, "end")
    width = end - start
    if width < 1:
        raise InvalidInput("subtree range must not be empty")
    top = width.bit_length() - 1
    if start & ((1 << top) - 1):
        raise InvalidInput(f"subtree [{start}, {end}) is not aligned to its largest complete subtree")
    parts: list[bytes] = []
    position = start
    for level in range(top, -1, -1):
        if width >> level & 1:
            parts.append(_read(node, level, position >> level))
            position += 1 << level
    return frontier_root(parts)


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, leaf-side hash first.

    Walks from the root down towards the leaf; the sibling at each step is a complete left subtree or
    the MTH of the right part (complete once the walk has gone left once).
    """
    _check_size(index, "leaf index")
    _check_size(size)
    if size < 1:
        raise InvalidInput("the empty tree has no inclusion proofs")
    if index >= size:
        raise InvalidInput(f"leaf index {index} is out of range for tree size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _largest_power_of_two_below(end - start)
        middle = start + k
        if index < middle:
            # m < k: PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(subtree_root(middle, end, node))
            end = middle
        else:
            # m >= k: PATH(m - k, D[k:n]) : MTH(D[0:k])
            level = k.bit_length() - 1
            path.append(_read(node, level, start >> level))
            start = middle
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, node: NodeReader) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 2.1.4.1, leaf-side hash first.

    Equal sizes give the empty proof (also for 0 == 0). RFC 9162 2.1.4.1 defines proofs for
    ``0 < m < n`` only: ``old_size == 0`` with a non-empty new tree raises :class:`InvalidInput`, since
    every tree extends the empty tree and there is nothing to prove.
    """
    _check_size(old_size, "old tree size")
    _check_size(new_size, "new tree size")
    if old_size > new_size:
        raise InvalidInput(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == new_size:
        return []
    if old_size == 0:
        raise InvalidInput("consistency proofs are defined for a non-empty old tree only (RFC 9162 2.1.4.1)")
    path: list[bytes] = []
    start, end = 0, new_size
    whole = True  # SUBPROOF's flag b: is the current subtree a whole subtree of the old tree's root?
    while True:
        width = end - start
        m = old_size - start
        if m == width:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not whole:
                path.append(subtree_root(start, end, node))
            break
        k = _largest_power_of_two_below(width)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            path.append(subtree_root(start + k, end, node))
            end = start + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            level = k.bit_length() - 1
            path.append(_read(node, level, start >> level))
            start += k
            whole = False
    path.reverse()
    return path


# --- verification -------------------------------------------------------------------------------


def _need_size(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise VerificationFailed(f"{what} must be a non-negative integer")
    return value


def _need_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise VerificationFailed(f"{what} must be bytes")
    if len(value) != HASH_SIZE:
        raise VerificationFailed(f"{what} has {len(value)} bytes, expected {HASH_SIZE}")
    return value


def _need_proof(proof: object, what: str) -> list[bytes]:
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        raise VerificationFailed(f"{what} must be a sequence of hashes")
    return [_need_hash(p, f"{what} element {i}") for i, p in enumerate(proof)]


def _inclusion_proof_length(index: int, size: int) -> int:
    """Length of PATH(index, D[size]): the levels below the point where the paths to ``index`` and to
    the last leaf part (full siblings), plus one right-edge sibling per set bit of ``index`` above it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(old_size: int, new_size: int) -> int:
    """Length of PROOF(old_size, D[new_size]), ``0 < old_size < new_size``: the inclusion path of leaf
    ``old_size - 1`` with its lowest ``shift`` levels folded into one seed node, the seed omitted when
    it is the old root itself (``old_size`` a power of two, RFC 9162 2.1.4.2 step 2)."""
    shift = (old_size & -old_size).bit_length() - 1
    seed = 0 if old_size & (old_size - 1) == 0 else 1
    return _inclusion_proof_length(old_size - 1, new_size) - shift + seed


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 2.1.3.2 steps 1-4, and the ``sn == 0`` check of 5).

    Raises :class:`VerificationFailed` if the inputs are malformed or inconsistent with each other.
    """
    index = _need_size(index, "leaf index")
    size = _need_size(size, "tree size")
    # Step 1: leaf_index >= tree_size fails.
    if index >= size:
        raise VerificationFailed(f"leaf index {index} is out of range for tree size {size}")
    r = _need_hash(leaf_hash, "leaf hash")
    path = _need_proof(proof, "inclusion proof")
    expected = _inclusion_proof_length(index, size)
    if len(path) != expected:
        raise VerificationFailed(
            f"wrong inclusion proof length: {len(path)} hashes, expected {expected} for leaf {index} "
            f"in a tree of size {size}"
        )
    # Steps 2-4.
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise VerificationFailed("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5 (first half): sn must be 0.
    if sn != 0:
        raise VerificationFailed("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2: prove that ``leaf_hash`` is leaf ``index`` (0-based) of the tree of ``size``
    leaves with root hash ``root``. Raises :class:`VerificationFailed` on any failure."""
    expected_root = _need_hash(root, "root hash")
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    # Step 5 (second half): compare r against the root hash.
    if not hmac.compare_digest(computed, expected_root):
        raise VerificationFailed("inclusion proof does not lead to the given root hash")


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """RFC 9162 2.1.4.2: prove that the tree of ``new_size`` leaves with ``new_root`` extends the tree
    of ``old_size`` leaves with ``old_root``. Raises :class:`VerificationFailed` on any failure.

    Equal sizes need an empty proof and equal roots (the empty root for size 0). An empty old tree
    with a non-empty new one fails: RFC 9162 2.1.4.1 defines no proof for it, and a verifier holding
    the empty tree has nothing to check. Every root must be a 32-byte hash, also when sizes are equal.
    """
    old_size = _need_size(old_size, "old tree size")
    new_size = _need_size(new_size, "new tree size")
    first_hash = _need_hash(old_root, "old root hash")
    second_hash = _need_hash(new_root, "new root hash")
    path = _need_proof(proof, "consistency proof")
    if old_size > new_size:
        raise VerificationFailed(f"old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == new_size:
        if path:
            raise VerificationFailed("consistency proof between trees of equal size must be empty")
        if old_size == 0 and not hmac.compare_digest(first_hash, EMPTY_ROOT):
            raise VerificationFailed("the root hash of the empty tree must be SHA-256 of the empty string")
        if not hmac.compare_digest(first_hash, second_hash):
            raise VerificationFailed("trees of equal size have different root hashes")
        return
    if old_size == 0:
        raise VerificationFailed("no consistency proof exists from the empty tree (RFC 9162 2.1.4.1)")
    expected = _consistency_proof_length(old_size, new_size)
    # Step 1 (an empty path fails) is covered: expected is at least 1 when 0 < old_size < new_size.
    if len(path) != expected:
        raise VerificationFailed(
            f"wrong consistency proof length: {len(path)} hashes, expected {expected} "
            f"from size {old_size} to size {new_size}"
        )
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, first_hash)
    # Steps 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            raise VerificationFailed("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise VerificationFailed("consistency proof is shorter than the tree is deep")
    if not hmac.compare_digest(fr, first_hash):
        raise VerificationFailed("consistency proof does not lead to the old root hash")
    if not hmac.compare_digest(sr, second_hash):
        raise VerificationFailed("consistency proof does not lead to the new root hash")
