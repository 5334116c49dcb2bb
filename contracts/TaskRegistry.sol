// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {EdgeTuneState} from "./EdgeTuneState.sol";
import {RoundClock} from "./libraries/RoundClock.sol";
import {ScoreTally} from "./libraries/ScoreTally.sol";

/// @title TaskRegistry
/// @notice Tasks, edges and money: creating and funding a task, an optional registration
/// allowlist, staking and leaving, slashing, and pull payments. {EdgeTune} adds the rounds.
/// @dev Registration never starts a task early on a stranger's transaction (only the owner's
/// {start} or the deadline does), and leaving during registration frees the slot, so filling a
/// task with throwaway keys cannot lock honest edges or the owner out.
abstract contract TaskRegistry is EdgeTuneState, ReentrancyGuard {
    using SafeCast for uint256;
    using RoundClock for RoundClock.Clock;

    // ---------------------------------------------------------------- task lifecycle

    /// @notice Creates a task, funds its reward pool with `msg.value`, and restricts registration
    /// to `allowlist` unless it is empty (an open task is exposed to Sybil registrations).
    /// @dev Requirements: see {_validateConfig}. Emits {TaskCreated} and {EdgeAllowed} per entry.
    function createTask(TaskConfig calldata config, address[] calldata allowlist)
        external
        payable
        returns (uint256 taskId)
    {
        _validateConfig(config);
        taskId = ++_taskCount;
        Task storage task = _tasks[taskId];
        task.owner = msg.sender;
        task.config = config;
        task.pool = msg.value;
        task.rewardPerRound = msg.value / config.rounds;
        task.globalHash = config.initialGlobalHash;
        task.globalCid = config.initialGlobalCid;
        task.restricted = allowlist.length > 0;
        task.registrationEnd = (block.number + config.registrationBlocks).toUint64();
        _openRound(taskId, 1, task.registrationEnd);
        emit TaskCreated(taskId, msg.sender, msg.value, config);
        for (uint256 i = 0; i < allowlist.length; ++i) {
            _allowed[taskId][allowlist[i]] = true;
            emit EdgeAllowed(taskId, allowlist[i]);
        }
    }

    /// @notice Joins a task as an edge, staking `msg.value`.
    /// @dev Requirements: Registration phase, on the allowlist if there is one, not registered,
    /// room left, stake >= minStake. Emits {EdgeRegistered}.
    function register(uint256 taskId) external payable {
        Task storage task = _existingTask(taskId);
        _requirePhase(taskId, Phase.Registration);
        if (task.restricted && !_allowed[taskId][msg.sender]) revert EdgeTuneNotAllowed(taskId, msg.sender);
        if (_edges[taskId][msg.sender].registered) revert EdgeTuneAlreadyRegistered(taskId, msg.sender);
        if (task.edgeCount >= task.config.maxEdges) revert EdgeTuneTaskFull(taskId, task.config.maxEdges);
        if (msg.value < task.config.minStake) revert EdgeTuneStakeTooLow(taskId, msg.value, task.config.minStake);
        _edges[taskId][msg.sender] = Edge({
            stake: msg.value.toUint128(),
            index: uint16(task.edges.length),
            registered: true,
            active: true,
            exiting: false
        });
        task.edges.push(msg.sender);
        task.edgeCount += 1;
        task.activeCount += 1;
        task.activeStake += msg.value;
        emit EdgeRegistered(taskId, msg.sender, msg.value);
    }

    /// @notice Ends registration now and opens round 1 (otherwise it opens at the deadline).
    /// @dev Requirements: caller is the task owner, Registration phase. Emits {TaskStarted}.
    function start(uint256 taskId) external {
        Task storage task = _requireOwner(taskId);
        _requirePhase(taskId, Phase.Registration);
        task.registrationEnd = uint64(block.number - 1);
        _openRound(taskId, 1, task.registrationEnd);
        emit TaskStarted(taskId, task.activeCount, task.activeStake);
    }

    /// @notice Cancels a task before round 1 opens; stakes and the pool become releasable.
    /// @dev Requirements: caller is the task owner, Registration phase. Emits {TaskCancelled}.
    function cancel(uint256 taskId) external {
        _requireOwner(taskId);
        _requirePhase(taskId, Phase.Registration);
        _tasks[taskId].cancelled = true;
        emit TaskCancelled(taskId);
    }

    /// @notice Leaves a task. During registration the edge's slot is freed and its stake credited
    /// at once; later it keeps its duties for the current round and is deactivated when that
    /// round is finalized (at once if the round is being finalized in batches and its batch has
    /// run), after which {releaseStake} returns what is left of its stake.
    /// @dev Requirements: an active, not already exiting edge of a running task.
    /// Emits {EdgeLeft} during registration, {ExitRequested} after.
    function requestExit(uint256 taskId) external {
        Task storage task = _existingTask(taskId);
        Edge storage edge = _requireActiveEdge(taskId);
        if (edge.exiting || task.finished || task.cancelled) revert EdgeTuneNotActiveEdge(taskId, msg.sender);
        if (phase(taskId) == Phase.Registration) {
            _leave(taskId, task, edge);
        } else {
            edge.exiting = true;
            emit ExitRequested(taskId, msg.sender, task.round);
            // Between two finalize calls: an edge whose batch is settled has no duty left this
            // round, so it leaves with it, as the batch would have let it, not a round later.
            Settlement storage settling = _rounds[taskId][task.round].settlement;
            if (settling.started && edge.index < settling.settledEdges) _deactivate(taskId, msg.sender);
        }
    }

    /// @notice Moves the caller's remaining stake into its withdrawable balance.
    /// @dev Requirements: the edge is no longer active, or the task has finished or was cancelled.
    /// Emits {StakeReleased}.
    function releaseStake(uint256 taskId) external {
        Task storage task = _existingTask(taskId);
        Edge storage edge = _edges[taskId][msg.sender];
        if (edge.active && !task.finished && !task.cancelled) revert EdgeTuneStakeLocked(taskId, msg.sender);
        uint256 amount = edge.stake;
        if (amount == 0) revert EdgeTuneNothingToWithdraw(msg.sender);
        if (edge.active) _deactivate(taskId, msg.sender);
        edge.stake = 0;
        _owed[msg.sender] += amount;
        emit StakeReleased(taskId, msg.sender, amount);
    }

    /// @notice Credits the task's undistributed pool to its owner once the task is over.
    /// @dev Requirements: caller is the owner, the task has finished or was cancelled.
    /// Emits {PoolRefunded}.
    function refundPool(uint256 taskId) external {
        Task storage task = _requireOwner(taskId);
        if (!task.finished && !task.cancelled) revert EdgeTuneWrongPhase(taskId, phase(taskId), Phase.Finished);
        uint256 amount = task.pool;
        if (amount == 0) revert EdgeTuneNothingToRefund(taskId);
        task.pool = 0;
        task.carry = 0;
        _owed[msg.sender] += amount;
        emit PoolRefunded(taskId, msg.sender, amount);
    }

    /// @notice Pays the caller everything credited to it (rewards, released stakes, refunds).
    /// @dev Checks-effects-interactions behind a reentrancy lock. Emits {Withdrawn}.
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert EdgeTuneNothingToWithdraw(msg.sender);
        _owed[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The phase of a task, derived from the block number, deadlines and counts.
    function phase(uint256 taskId) public view returns (Phase) {
        Task storage task = _tasks[taskId];
        if (task.owner == address(0)) return Phase.None;
        if (task.cancelled) return Phase.Cancelled;
        if (task.finished) return Phase.Finished;
        if (block.number <= task.registrationEnd) return Phase.Registration;
        return _rounds[taskId][task.round].clock.phase();
    }

    /// @notice The task's phase and `edge`'s own record in the current round, in one call.
    function status(uint256 taskId, address edge) external view returns (Status memory s) {
        Task storage task = _existingTask(taskId);
        Round storage rd = _rounds[taskId][task.round];
        Edge storage e = _edges[taskId][edge];
        s.phase = phase(taskId);
        s.round = task.round;
        s.phaseEnd = s.phase == Phase.Registration ? task.registrationEnd : rd.clock.end(s.phase);
        s.activeEdges = task.activeCount;
        (s.reveals, s.scoreReveals, s.includedMask) = (rd.clock.reveals, rd.clock.scoreReveals, rd.includedMask);
        (s.globalHash, s.globalCid) = (task.globalHash, task.globalCid);
        (s.registered, s.active, s.stake) = (e.registered, e.active, e.stake);
        s.done = _duties[taskId][task.round][edge].done;
        s.owed = _owed[edge];
        (s.talliedParts, s.settledEdges) = (rd.clock.talliedParts, rd.settlement.settledEdges);
    }

    /// @notice The task's configuration as created.
    function taskConfig(uint256 taskId) external view returns (TaskConfig memory) {
        return _existingTask(taskId).config;
    }

    /// @notice Accounting of a task: owner, undistributed pool, carry-over, active stake.
    function taskFunds(uint256 taskId)
        external
        view
        returns (address owner, uint256 pool, uint256 carry, uint256 rewardPerRound, uint256 activeStake)
    {
        Task storage task = _existingTask(taskId);
        return (task.owner, task.pool, task.carry, task.rewardPerRound, task.activeStake);
    }

    /// @notice Every edge that registered for the task and did not leave during registration.
    function edgesOf(uint256 taskId) external view returns (address[] memory) {
        return _existingTask(taskId).edges;
    }

    /// @notice The stake `edge` holds in a task (after any slashing).
    function stakeOf(uint256 taskId, address edge) external view returns (uint256) {
        return _edges[taskId][edge].stake;
    }

    /// @notice What `account` can withdraw now.
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice The number of tasks created so far (ids run from 1).
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    // ---------------------------------------------------------------- internals

    /// @dev Names the bad field and its value. Requirements: a non-zero pool of at least one wei
    /// per round, every phase at least one block and the tally one per part of a full round,
    /// 1 <= maxEdges <= MAX_EDGES, the initial global's CID at most MAX_CID_BYTES, quorum above half
    /// (two candidates can never both reach it), bps at most 100%, slashes at most minStake.
    function _validateConfig(TaskConfig calldata c) private view {
        if (c.rounds == 0) revert EdgeTuneInvalidConfig("rounds", c.rounds);
        if (msg.value < c.rounds) revert EdgeTuneInvalidConfig("pool", msg.value);
        if (c.maxEdges == 0 || c.maxEdges > MAX_EDGES) revert EdgeTuneInvalidConfig("maxEdges", c.maxEdges);
        if (c.quorumBps <= _BPS / 2 || c.quorumBps > _BPS) revert EdgeTuneInvalidConfig("quorumBps", c.quorumBps);
        if (c.minTurnoutBps > _BPS) revert EdgeTuneInvalidConfig("minTurnoutBps", c.minTurnoutBps);
        if (c.validatorShareBps > _BPS) revert EdgeTuneInvalidConfig("validatorShareBps", c.validatorShareBps);
        uint32[7] memory len = [
            c.commitBlocks, c.revealBlocks, c.scoreCommitBlocks, c.scoreRevealBlocks, c.tallyBlocks,
            c.attestCommitBlocks, c.attestRevealBlocks
        ];
        for (uint256 s = 0; s < len.length; ++s) {
            if (len[s] == 0) revert EdgeTuneInvalidConfig("phaseBlocks", s);
        }
        // Agents send the tally parts one after another, so one a block at best: a shorter
        // window would reject every round of more than 32 updates.
        uint256 parts = (uint256(c.maxEdges) + ScoreTally.COLUMNS - 1) / ScoreTally.COLUMNS;
        if (c.tallyBlocks < parts) revert EdgeTuneInvalidConfig("tallyBlocks", c.tallyBlocks);
        if (bytes(c.initialGlobalCid).length > MAX_CID_BYTES) {
            revert EdgeTuneInvalidConfig("initialGlobalCid", bytes(c.initialGlobalCid).length);
        }
        if (c.minStake == 0) revert EdgeTuneInvalidConfig("minStake", 0);
        if (c.slashAbsent > c.minStake) revert EdgeTuneInvalidConfig("slashAbsent", c.slashAbsent);
        if (c.slashNonReveal > c.minStake) revert EdgeTuneInvalidConfig("slashNonReveal", c.slashNonReveal);
        if (c.slashInvalid > c.minStake) revert EdgeTuneInvalidConfig("slashInvalid", c.slashInvalid);
    }

    /// @dev Removes a registering edge entirely (swap-and-pop), so its slot is free again.
    function _leave(uint256 taskId, Task storage task, Edge storage edge) private {
        uint256 amount = edge.stake;
        address last = task.edges[task.edges.length - 1];
        task.edges[edge.index] = last;
        _edges[taskId][last].index = edge.index;
        task.edges.pop();
        task.edgeCount -= 1;
        task.activeCount -= 1;
        task.activeStake -= amount;
        delete _edges[taskId][msg.sender];
        _owed[msg.sender] += amount;
        emit EdgeLeft(taskId, msg.sender, amount);
    }

    function _existingTask(uint256 taskId) internal view returns (Task storage task) {
        task = _tasks[taskId];
        if (task.owner == address(0)) revert EdgeTuneUnknownTask(taskId);
    }

    function _requireOwner(uint256 taskId) internal view returns (Task storage task) {
        task = _existingTask(taskId);
        if (task.owner != msg.sender) revert EdgeTuneNotTaskOwner(taskId, msg.sender);
    }

    function _requirePhase(uint256 taskId, Phase required) internal view {
        _existingTask(taskId);
        Phase current = phase(taskId);
        if (current != required) revert EdgeTuneWrongPhase(taskId, current, required);
    }

    function _requireActiveEdge(uint256 taskId) internal view returns (Edge storage edge) {
        edge = _edges[taskId][msg.sender];
        if (!edge.active) revert EdgeTuneNotActiveEdge(taskId, msg.sender);
    }

    function _roundForAction(uint256 taskId, uint16 round, Phase required) internal view returns (Round storage) {
        _requirePhase(taskId, required);
        uint16 current = _tasks[taskId].round;
        if (round != current) revert EdgeTuneWrongRound(taskId, current, round);
        return _rounds[taskId][round];
    }
}
