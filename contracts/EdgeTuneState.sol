// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IEdgeTune} from "./IEdgeTune.sol";
import {RoundClock} from "./libraries/RoundClock.sol";

/// @title EdgeTuneState
/// @notice The storage of {EdgeTune}, and the few internal steps both it and {RoundSettler}
/// take. RoundSettler runs by delegatecall on EdgeTune's storage, so both must lay storage out
/// alike: every state variable of either is declared here and nowhere else (OpenZeppelin's
/// ReentrancyGuard keeps its flag in its own ERC-7201 slot).
abstract contract EdgeTuneState is IEdgeTune {
    using RoundClock for RoundClock.Clock;

    /// @notice Largest task: the 256-bit update masks. The keeper work whose gas grows with the
    /// edges ({EdgeTune.tally}, {EdgeTune.finalize}) is cut into bounded calls.
    uint16 public constant MAX_EDGES = 256;
    /// @notice Longest CID accepted (a CIDv1 of a SHA-256 digest in base32 is 59 bytes): the
    /// winning CID is copied into storage by {EdgeTune.finalize}, so its length bounds that call.
    uint256 public constant MAX_CID_BYTES = 128;
    uint16 internal constant _BPS = 10_000;

    struct Task {
        address owner;
        uint16 round; // 0 while registering
        uint16 edgeCount; // registered and not left during registration
        uint16 activeCount;
        bool cancelled;
        bool finished;
        bool restricted; // registration limited to the allowlist
        uint64 registrationEnd;
        uint256 activeStake;
        uint256 pool; // not yet credited to anyone: future rounds + carry-over + slashed stake
        uint256 carry; // part of `pool` added to the next round's budget
        uint256 rewardPerRound;
        bytes32 globalHash;
        string globalCid;
        address[] edges;
        TaskConfig config;
    }

    /// @dev One slot.
    struct Edge {
        uint128 stake;
        uint16 index; // position in `Task.edges`
        bool registered;
        bool active;
        bool exiting;
    }

    /// @dev An edge's record in one round, one slot: its `done` steps, its 1-based position in
    /// the update reveal order (0 = none), its stage-1 agreement in millionths, and its ballot's
    /// distance from the medians summed over the tally parts so far.
    struct Duty {
        uint8 done;
        uint16 revealIndex;
        uint32 agreement;
        uint64 distance;
    }

    struct Round {
        RoundClock.Clock clock;
        // Per tally part: a chain over every revealed ballot's scores of that part, checked by
        // {EdgeTune.tally}.
        bytes32[8] scoreDigests;
        uint256 validMask;
        uint256 copyMask;
        uint256 includedMask;
        uint256 attestStake;
        bytes32 leader;
        uint256 leaderStake;
        int32[] medians;
        Settlement settlement;
    }

    /// @dev What {EdgeTune.finalize} fixes in its first call and later calls go on from; stored
    /// only when the round's edges take more than one call. Three slots.
    struct Settlement {
        uint128 budget; // this round's reward budget, paid out or carried over
        uint128 paid;
        uint128 trainerPool; // 0 in a rejected round
        uint128 validatorPool;
        uint64 medianTotal;
        uint64 agreementTotal;
        uint16 settledEdges;
        bool accepted;
        bool started;
    }

    uint256 internal _taskCount;
    mapping(uint256 taskId => Task) internal _tasks;
    mapping(uint256 taskId => mapping(address edge => Edge)) internal _edges;
    mapping(uint256 taskId => mapping(address edge => bool)) internal _allowed;
    mapping(uint256 taskId => mapping(uint16 round => Round)) internal _rounds;
    mapping(uint256 taskId => mapping(uint16 round => mapping(address edge => Duty))) internal _duties;
    /// @dev One slot per edge and round, reused by its three commitments; after an approving
    /// attestation is revealed it holds the candidate key instead.
    mapping(uint256 taskId => mapping(uint16 round => mapping(address edge => bytes32))) internal _commitments;
    mapping(address account => uint256) internal _owed;
    mapping(uint256 taskId => mapping(uint16 round => mapping(bytes32 updateHash => bool))) internal _revealedHashes;
    mapping(uint256 taskId => mapping(uint16 round => mapping(bytes32 key => Candidate))) internal _candidates;

    /// @notice Bits of an edge's `done` mask in a round: update committed 1, revealed 2; scores
    /// committed 4, revealed 8; attestation committed 16, revealed 32. Each reveal bit is its
    /// commit bit << 1, so only the commit bits (and the last reveal bit) need names.
    uint8 internal constant STEP_UPDATE_COMMITTED = 1;
    uint8 internal constant STEP_SCORES_COMMITTED = 4;
    uint8 internal constant STEP_ATTEST_COMMITTED = 16;
    uint8 internal constant STEP_ATTEST_REVEALED = 32;

    struct Candidate {
        uint256 approvingStake;
        bytes32 aggregateHash;
        string aggregateCid;
    }

    // ---------------------------------------------------------------- shared steps

    function _openRound(uint256 taskId, uint16 round, uint64 startBlock) internal {
        Task storage task = _tasks[taskId];
        task.round = round;
        _rounds[taskId][round].clock.open(startBlock, RoundClock.lengths(task.config));
    }

    function _advance(uint256 taskId, uint16 round) internal {
        Task storage task = _tasks[taskId];
        if (round == task.config.rounds) {
            task.finished = true;
            emit TaskFinished(taskId, task.globalHash, task.globalCid);
        } else {
            _openRound(taskId, round + 1, uint64(block.number));
        }
    }

    /// @dev Takes up to `amount` of the edge's stake into the carry-over, so it rewards the honest
    /// edges of the next round; deactivates an edge left below the minimum stake.
    function _slash(uint256 taskId, uint16 round, address account, SlashReason reason, uint256 amount) internal {
        Task storage task = _tasks[taskId];
        Edge storage edge = _edges[taskId][account];
        uint256 taken = amount < edge.stake ? amount : edge.stake;
        if (taken == 0) return;
        edge.stake -= uint128(taken);
        if (edge.active) task.activeStake -= taken;
        task.pool += taken;
        task.carry += taken;
        emit Slashed(taskId, round, account, reason, taken);
        if (edge.active && edge.stake < task.config.minStake) _deactivate(taskId, account);
    }

    function _deactivate(uint256 taskId, address account) internal {
        Task storage task = _tasks[taskId];
        Edge storage edge = _edges[taskId][account];
        edge.active = false;
        task.activeCount -= 1;
        task.activeStake -= edge.stake;
    }
}
