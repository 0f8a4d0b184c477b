import Foundation

/// Which layers of a Qwen-MoE model are sparse: not listed in mlp_only_layers, and every decoder_sparse_step-th.
func qwenMoELayers(count: Int, experts: Int, sparseStep: Int, mlpOnly: [Int]) -> [Bool] {
    (0..<count).map { l in !mlpOnly.contains(l) && experts > 0 && sparseStep > 0 && (l + 1) % sparseStep == 0 }
}

let qwenMLPNames = MLPNames(gate: "gate_proj", up: "up_proj", down: "down_proj")
