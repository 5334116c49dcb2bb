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
    function lowerMedian(uint256[] memory packed) internal pure returns (int32) {
        uint256 total = 0;
        for (uint256 i = 0; i < packed.length; ++i) {
            total += packed[i] & _WEIGHT_MASK;
        }
        if (total == 0) return 0;
        uint256 lo = 0;
        uint256 hi = packed.length; // exclusive
        uint256 below = 0; // weight of the entries known to order before packed[lo]
        // Terminates: each pass either returns or strictly shrinks [lo, hi).
        while (true) {
            (uint256 lt, uint256 gt, uint256 less, uint256 equal) = _partition(packed, lo, hi);
            // `2 * x >= total` is `x >= total / 2` without losing the odd wei. The invariant
            // 2 * below < total holds throughout, so the answer always lies in [lo, hi).
            if (2 * (below + less) >= total) {
                hi = lt;
            } else if (2 * (below + less + equal) >= total) {
                return _score(packed[lt]);
            } else {
                below += less + equal;
                lo = gt;
            }
        }
    }

    /// @dev Three-way partition of [lo, hi) by score around the median of three (so sorted,
    /// reversed and constant inputs all stay linear): afterwards [lo, lt) scores below the pivot,
    /// [lt, gt) equals it, [gt, hi) is above. Also returns the weights of the first two parts.
    function _partition(uint256[] memory a, uint256 lo, uint256 hi)
        private
        pure
        returns (uint256 lt, uint256 gt, uint256 less, uint256 equal)
    {
        uint256 pivot = _medianOfThree(a[lo] >> 128, a[lo + (hi - lo) / 2] >> 128, a[hi - 1] >> 128);
        (lt, gt) = (lo, hi);
        uint256 i = lo;
        while (i < gt) {
            uint256 word = a[i];
            uint256 key = word >> 128;
            if (key < pivot) {
                (a[i], a[lt]) = (a[lt], word);
                less += word & _WEIGHT_MASK;
                ++lt;
                ++i;
            } else if (key > pivot) {
                --gt;
                (a[i], a[gt]) = (a[gt], word);
            } else {
                equal += word & _WEIGHT_MASK;
                ++i;
            }
        }
    }

    function _medianOfThree(uint256 x, uint256 y, uint256 z) private pure returns (uint256) {
        if (x > y) (x, y) = (y, x);
        if (y > z) y = z;
        return x > y ? x : y;
    }

    function _score(uint256 word) private pure returns (int32) {
        return int32(uint32((word >> 128) ^ _SIGN_FLIP));
    }
}
