"""Helpers for chain tests: a throwaway edgetune project (one small contract, the real
node_modules and tooling linked in) so tests never touch the real contracts/, build/ or
.edgetune/, and free ports for nodes."""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COUNTER = """\
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Adder} from "./lib/Adder.sol";

contract Counter is Ownable {
    error CounterTooBig(uint256 value, uint256 limit);

    event Incremented(address indexed by, uint256 value);

    uint256 public value;

    constructor() Ownable(msg.sender) {}

    function inc(uint256 by) external {
        uint256 next = Adder.add(value, by);
        if (next > 1000) revert CounterTooBig(next, 1000);
        value = next;
        emit Incremented(msg.sender, next);
    }
}
"""

ADDER = """\
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

library Adder {
    function add(uint256 a, uint256 b) internal pure returns (uint256) {
        return a + b;
    }
}
"""


def make_project(root: Path) -> Path:
    """A project dir that compiles and runs nodes like the real one."""
    (root / "contracts" / "lib").mkdir(parents=True)
    (root / "contracts" / "Counter.sol").write_text(COUNTER)
    (root / "contracts" / "lib" / "Adder.sol").write_text(ADDER)
    (root / "scripts").mkdir()
    (root / "scripts" / "solc-shim.js").symlink_to(REPO / "scripts" / "solc-shim.js")
    (root / "node_modules").symlink_to(REPO / "node_modules")
    (root / "python").symlink_to(REPO / "python")  # hardhat.config.js reads solc_settings.json
    shutil.copy(REPO / "hardhat.config.js", root / "hardhat.config.js")
    return root
