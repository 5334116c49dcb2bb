// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {WeightedMedian} from "../libraries/WeightedMedian.sol";

/// @notice Test double exposing the WeightedMedian library to the test suite.
contract WeightedMedianHarness {
    function lowerMedian(int32[] calldata scores, uint128[] calldata weights) external pure returns (int32) {
        uint256[] memory packed = new uint256[](scores.length);
        for (uint256 i = 0; i < scores.length; ++i) {
            packed[i] = WeightedMedian.pack(scores[i], weights[i]);
        }
        return WeightedMedian.lowerMedian(packed);
    }
}
