// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Arrays} from "@openzeppelin/contracts/utils/Arrays.sol";

/// @title WeightedMedian
/// @notice Stake-weighted median of int32 scores: the value a stake majority supports, so a
/// minority of validators cannot move an edge's contribution by exaggerating (the role Yuma
/// consensus's clipping plays in Bittensor).
library WeightedMedian {
    uint256 private constant _SIGN_FLIP = 1 << 31;

    /// @notice Packs a (score, weight) pair into one word that sorts by score.
    /// @dev Flipping the sign bit maps int32 onto uint32 monotonically; the weight sits below it.
    function pack(int32 score, uint128 weight) internal pure returns (uint256) {
        uint256 orderedScore = uint256(uint32(score)) ^ _SIGN_FLIP;
        return (orderedScore << 128) | weight;
    }

    /// @notice The lower weighted median of packed pairs: the smallest score at which the
    /// cumulative weight reaches half of the total weight. Zero for an empty set or zero weight.
    /// @dev Sorts `packed` in place. Requirements: entries made by {pack}.
    function lowerMedian(uint256[] memory packed) internal pure returns (int32) {
        packed = Arrays.sort(packed);
        uint256 total = 0;
        for (uint256 i = 0; i < packed.length; ++i) {
            total += uint128(packed[i]);
        }
        if (total == 0) return 0;
        uint256 cumulative = 0;
        for (uint256 i = 0; i < packed.length; ++i) {
            cumulative += uint128(packed[i]);
            // `2 * cumulative >= total` is `cumulative >= total / 2` without losing the odd wei.
            if (2 * cumulative >= total) return _unpackScore(packed[i]);
        }
        return _unpackScore(packed[packed.length - 1]);
    }

    function _unpackScore(uint256 word) private pure returns (int32) {
        return int32(uint32((word >> 128) ^ _SIGN_FLIP));
    }
}
