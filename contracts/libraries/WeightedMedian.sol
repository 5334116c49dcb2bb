// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title WeightedMedian
/// @notice Stake-weighted median of int32 scores: the value a stake majority supports, so a
/// minority of validators cannot move an update's contribution outside the range of the honest
/// scores by exaggerating (the role Yuma consensus's clipping plays in Bittensor).
/// @dev Found by weighted quickselect, expected O(n), instead of a full sort: v1 sorted one
/// array per update and spent 4.9M of its 12.7M finalize gas at 64 edges doing so.
library WeightedMedian {
    uint256 private constant _SIGN_FLIP = 1 << 31;
    uint256 private constant _WEIGHT_MASK = type(uint128).max;

    /// @notice Packs a (score, weight) pair into one word that orders by score.
    /// @dev Flipping the sign bit maps int32 onto uint32 monotonically; the weight sits below it.
    function pack(int32 score, uint128 weight) internal pure returns (uint256) {
        uint256 orderedScore = uint256(uint32(score)) ^ _SIGN_FLIP;
        return (orderedScore << 128) | weight;
    }

    /// @notice The lower weighted median of packed pairs: the smallest score at which the
    /// cumulative weight of the scores up to it reaches half of the total weight. Zero for an
    /// empty set or zero total weight.
    /// @dev Reorders `packed` in place. Requirements: entries made by {pack}.
    ///
    /// Weighted quickselect: each pass three-way partitions the candidate range [lo, hi) around
    /// the median of three keys into [lo, lower) below the pivot, [lower, upper) equal to it and
    /// [upper, hi) above, with the weights of the first two parts. If the weight below the
    /// range plus the part below the pivot already reaches half the total, the answer lies
    /// below; if adding the equal part reaches it, the pivot is the answer; otherwise it lies
    /// above. `2 * x >= total` is `x >= total / 2` without losing the odd wei; the invariant
    /// 2 * below < total keeps the answer inside [lo, hi), and every pass either returns or
    /// strictly shrinks the range (the pivot's own entries leave it), so it terminates.
    ///
    /// The three keys sit at positions drawn from a hash of the input, rehashed every pass. A
    /// fixed rule (first, middle, last) is quadratic on input built against it (McIlroy's
    /// adversary: 5.1x the gas at 256 entries, enough to push a tally part past 15M); here the
    /// pivots depend on the very values such an input would have to choose, so only chance
    /// makes a pass bad. The answer never depends on the pivots, only the gas does.
    ///
    /// In assembly because it is the hot loop of {ScoreTally.tally} (64 medians of 64 entries
    /// at MAX_EDGES: 8.4M gas in Solidity, a third of that here). It walks word pointers inside
    /// `packed` and compares whole words: with the weight in the low 128 bits, key < pivot is
    /// word < pivot << 128 and key > pivot is word > (pivot << 128 | mask). No sum can overflow:
    /// weights are uint128 and an array in memory has far fewer than 2^100 entries.
    function lowerMedian(uint256[] memory packed) internal pure returns (int32 median) {
        uint256 mask = _WEIGHT_MASK;
        uint256 signFlip = _SIGN_FLIP;
        assembly ("memory-safe") {
            let lo := add(packed, 0x20)
            let hi := add(lo, shl(5, mload(packed)))
            let total := 0
            for { let at := lo } lt(at, hi) { at := add(at, 0x20) } {
                total := add(total, and(mload(at), mask))
            }
            let below := 0 // weight of the entries known to order before the range
            let seed := keccak256(lo, sub(hi, lo))
            for {} total {} {
                let n := shr(5, sub(hi, lo))
                let x := shr(128, mload(add(lo, shl(5, mod(seed, n)))))
                let y := shr(128, mload(add(lo, shl(5, mod(shr(85, seed), n)))))
                let z := shr(128, mload(add(lo, shl(5, mod(shr(170, seed), n)))))
                mstore(0x00, seed) // scratch space
                seed := keccak256(0x00, 0x20)
                if gt(x, y) {
                    let t := x
                    x := y
                    y := t
                }
                if gt(y, z) { y := z }
                if gt(x, y) { y := x }
                let lowest := shl(128, y)
                let highest := or(lowest, mask)
                let lower := lo
                let upper := hi
                let less := 0
                let equal := 0
                for { let at := lo } lt(at, upper) {} {
                    let word := mload(at)
                    if lt(word, lowest) {
                        mstore(at, mload(lower))
                        mstore(lower, word)
                        less := add(less, and(word, mask))
                        lower := add(lower, 0x20)
                        at := add(at, 0x20)
                        continue
                    }
                    if gt(word, highest) {
                        upper := sub(upper, 0x20)
                        mstore(at, mload(upper))
                        mstore(upper, word)
                        continue
                    }
                    equal := add(equal, and(word, mask))
                    at := add(at, 0x20)
                }
                less := add(below, less)
                if iszero(lt(shl(1, less), total)) {
                    hi := lower
                    continue
                }
                if iszero(lt(shl(1, add(less, equal)), total)) {
                    median := signextend(3, xor(y, signFlip))
                    break
                }
                below := add(less, equal)
                lo := upper
            }
        }
    }
}
