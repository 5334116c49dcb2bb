// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {EdgeTuneState} from "./EdgeTuneState.sol";

/// @title RoundSettler
/// @notice The settlement of a round, which {EdgeTune.finalize} runs by delegatecall on its own
/// storage: decides the attestation vote, credits rewards, slashes, processes exits, and opens
/// the next round or finishes the task, up to 64 edges per call.
/// @dev A separate contract only because EdgeTune with it inside passes the 24,576-byte
/// runtime limit (EIP-170); EdgeTune creates it in its constructor, so its code is fixed with
/// EdgeTune's. Called directly it refuses, so no round's event ever comes from its address.
contract RoundSettler is EdgeTuneState {
    using SafeCast for uint256;

    /// @dev Edges settled per call: keeps a call near 4M gas (see docs/protocol.md, Gas).
    uint256 private constant _SETTLE_BATCH = 64;

    /// @dev This contract's own address, kept in its code: under delegatecall `address(this)`
    /// is EdgeTune's (OpenZeppelin's UUPSUpgradeable tells proxy calls apart the same way).
    address private immutable _self = address(this);

    /// @notice See {EdgeTune.finalize}; its caller has checked the phase.
    /// @dev Requirements: run by delegatecall (EdgeTuneNotDelegated otherwise).
    function finalize(uint256 taskId) external {
        if (address(this) == _self) revert EdgeTuneNotDelegated(_self);
        Task storage task = _tasks[taskId];
        uint16 round = task.round;
        Round storage rd = _rounds[taskId][round];
        Settlement memory s = rd.settlement.started ? rd.settlement : _openSettlement(taskId, round);
        uint256 end = _min(task.edges.length, s.settledEdges + _SETTLE_BATCH);
        uint256 paid = _settle(taskId, round, s, end);
        task.pool -= paid;
        (s.paid, s.settledEdges) = (s.paid + paid.toUint128(), uint16(end));
        if (end < task.edges.length) {
            s.started = true;
            rd.settlement = s;
            emit RoundSettling(taskId, round, s.settledEdges, uint16(task.edges.length));
            return;
        }
        task.carry += s.budget - s.paid;
        emit RoundFinalized(
            taskId,
            round,
            s.accepted,
            s.accepted ? rd.leader : bytes32(0),
            task.globalHash,
            task.globalCid,
            rd.leaderStake,
            rd.attestStake,
            s.budget,
            s.paid
        );
        _advance(taskId, round);
    }

    function _isAccepted(Task storage task, Round storage rd) private view returns (bool) {
        if (rd.leaderStake == 0) return false;
        bool quorum = rd.leaderStake * _BPS >= rd.attestStake * task.config.quorumBps;
        bool turnout = rd.attestStake * _BPS >= task.activeStake * task.config.minTurnoutBps;
        return quorum && turnout;
    }

    // ---------------------------------------------------------------- internals: settlement

    /// @dev Fixes the round's outcome in the first {finalize} call: the budget (this round's
    /// reward plus the carry-over, which slashes then start anew), the winner, and the totals
    /// each share is a fraction of. A rejected round pays nothing and carries its budget over.
    function _openSettlement(uint256 taskId, uint16 round) private returns (Settlement memory s) {
        Task storage task = _tasks[taskId];
        Round storage rd = _rounds[taskId][round];
        s.budget = (task.rewardPerRound + task.carry).toUint128();
        task.carry = 0;
        s.accepted = _isAccepted(task, rd);
        if (s.accepted) {
            Candidate storage winner = _candidates[taskId][round][rd.leader];
            (task.globalHash, task.globalCid) = (winner.aggregateHash, winner.aggregateCid);
            s.trainerPool = uint128((uint256(s.budget) * (_BPS - task.config.validatorShareBps)) / _BPS);
            s.validatorPool = s.budget - s.trainerPool;
        }
        (uint256 medianTotal, uint256 agreementTotal) = _rewardTotals(taskId, round);
        (s.medianTotal, s.agreementTotal) = (uint64(medianTotal), uint64(agreementTotal));
    }

    /// @dev Settles the task's edges from `s.settledEdges` up to `end`: credits each included
    /// update in proportion to its positive median, each validator that approved the winner in
    /// proportion to its agreement, slashes what the round's duties say, and processes exits.
    /// Returns the amount credited.
    function _settle(uint256 taskId, uint16 round, Settlement memory s, uint256 end) private returns (uint256 paid) {
        address[] storage edges = _tasks[taskId].edges;
        for (uint256 i = s.settledEdges; i < end; ++i) {
            if (_edges[taskId][edges[i]].active) paid += _settleEdge(taskId, round, edges[i], s);
        }
    }

    /// @dev An edge that skipped or withheld anything this round is paid nothing for it: a ballot
    /// withheld after seeing the others' moves the remaining medians, and this way that lever
    /// can never pay the one who pulls it.
    function _settleEdge(uint256 taskId, uint16 round, address account, Settlement memory s)
        private
        returns (uint256 paid)
    {
        Duty storage duty = _duties[taskId][round][account];
        (bool absent, bool unrevealed) = _lapses(_rounds[taskId][round], duty.done);
        if (s.accepted && !absent && !unrevealed) paid = _pay(taskId, round, account, duty, s);
        _slashDuties(taskId, round, account, duty, absent, unrevealed);
        Edge storage edge = _edges[taskId][account];
        if (edge.exiting && edge.active) _deactivate(taskId, account);
    }

    function _pay(uint256 taskId, uint16 round, address account, Duty storage duty, Settlement memory s)
        private
        returns (uint256 paid)
    {
        uint256 median = _positiveMedian(_rounds[taskId][round], duty);
        if (median > 0) {
            paid += _credit(taskId, round, account, RewardKind.Trainer, (s.trainerPool * median) / s.medianTotal);
        }
        if (duty.agreement > 0 && _approvedWinner(taskId, round, account, duty)) {
            uint256 amount = (s.validatorPool * duty.agreement) / s.agreementTotal;
            paid += _credit(taskId, round, account, RewardKind.Validator, amount);
        }
    }

    function _rewardTotals(uint256 taskId, uint16 round) private view returns (uint256 medianTotal, uint256 agreementTotal) {
        Round storage rd = _rounds[taskId][round];
        address[] storage edges = _tasks[taskId].edges;
        for (uint256 i = 0; i < edges.length; ++i) {
            if (!_edges[taskId][edges[i]].active) continue;
            Duty storage duty = _duties[taskId][round][edges[i]];
            medianTotal += _positiveMedian(rd, duty);
            if (_approvedWinner(taskId, round, edges[i], duty)) agreementTotal += duty.agreement;
        }
    }

    /// @dev An included update's median score, floored at zero; 0 for anything else.
    function _positiveMedian(Round storage rd, Duty storage duty) private view returns (uint256) {
        if (duty.revealIndex == 0) return 0;
        uint256 index = duty.revealIndex - 1;
        if (rd.includedMask & (uint256(1) << index) == 0) return 0;
        int32 median = rd.medians[index];
        return median > 0 ? uint256(uint32(median)) : 0;
    }

    function _approvedWinner(uint256 taskId, uint16 round, address account, Duty storage duty)
        private
        view
        returns (bool)
    {
        bytes32 leader = _rounds[taskId][round].leader;
        return duty.done & STEP_ATTEST_REVEALED != 0 && leader != 0 && _commitments[taskId][round][account] == leader;
    }

    /// @dev Absence (an opened commit stage the edge skipped) and non-reveal (a commitment it
    /// never opened), from the edge's `done` steps.
    function _lapses(Round storage rd, uint8 done) private view returns (bool absent, bool unrevealed) {
        // Commit stages the round opened: updates always, scores once an update was revealed,
        // attestations once the tally included something.
        absent = done & STEP_UPDATE_COMMITTED == 0 || (done & STEP_SCORES_COMMITTED == 0 && rd.clock.reveals > 0)
            || (done & STEP_ATTEST_COMMITTED == 0 && rd.clock.tallied && rd.clock.anyIncluded);
        // Commit bits are 1, 4, 16 and each reveal bit sits one above its commit bit.
        uint8 committed = done & 0x15;
        unrevealed = committed & ~((done >> 1) & 0x15) != 0;
    }

    /// @dev Absence, non-reveal and an update the stage-1 majority found invalid: each is
    /// slashed once per round.
    function _slashDuties(uint256 taskId, uint16 round, address account, Duty storage duty, bool absent, bool unrevealed)
        private
    {
        Round storage rd = _rounds[taskId][round];
        TaskConfig storage c = _tasks[taskId].config;
        if (absent) _slash(taskId, round, account, SlashReason.Absent, c.slashAbsent);
        if (unrevealed) _slash(taskId, round, account, SlashReason.NotRevealed, c.slashNonReveal);
        if (duty.revealIndex != 0 && rd.clock.tallied && rd.validMask & (uint256(1) << (duty.revealIndex - 1)) == 0) {
            _slash(taskId, round, account, SlashReason.InvalidUpdate, c.slashInvalid);
        }
    }

    function _credit(uint256 taskId, uint16 round, address edge, RewardKind kind, uint256 amount)
        private
        returns (uint256)
    {
        if (amount == 0) return 0;
        _owed[edge] += amount;
        emit RewardCredited(taskId, round, edge, kind, amount);
        return amount;
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }
}
