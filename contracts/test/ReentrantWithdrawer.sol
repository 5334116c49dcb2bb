// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface IEdgeTuneActions {
    function register(uint256 taskId) external payable;
    function requestExit(uint256 taskId) external;
    function withdraw() external;
}

/// @notice Test double: an edge whose receive hook re-enters `withdraw`, to prove the lock holds.
contract ReentrantWithdrawer {
    IEdgeTuneActions private immutable _target;
    uint256 public reentryAttempts;
    bytes public lastRevertData;

    constructor(address target) {
        _target = IEdgeTuneActions(target);
    }

    /// @notice Registers and exits during registration, which credits the stake at once.
    function becomeOwed(uint256 taskId) external payable {
        _target.register{value: msg.value}(taskId);
        _target.requestExit(taskId);
    }

    function attack() external {
        _target.withdraw();
    }

    receive() external payable {
        if (reentryAttempts > 0) return;
        reentryAttempts += 1;
        try _target.withdraw() {} catch (bytes memory reason) {
            lastRevertData = reason;
        }
    }
}
