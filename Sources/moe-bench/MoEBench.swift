import ArgumentParser
import Foundation

/// `moe-bench`: benchmarks that print tables (or JSON), each against a limit measured in the same run.
@main
struct MoEBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe-bench",
        abstract: "Benchmarks: model decode/prefill against the memory and GEMM rooflines; tokenizer throughput.",
        subcommands: [ModelBench.self, BandwidthBench.self, SplitBench.self, SequenceBench.self, AttentionBench.self, SpecBench.self, KVBench.self, KernelBench.self, TokenizerBench.self, LoadBench.self, RebalanceBench.self, CapacityBench.self],
        defaultSubcommand: ModelBench.self)
}
