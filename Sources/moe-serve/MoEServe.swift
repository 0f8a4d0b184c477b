import ArgumentParser
import Foundation
import MoECluster
import MoECore
import MoEModel

/// `moe-serve`: the program mpirun launches. Every subcommand that runs the model starts MPI first; without mpirun
/// the process is a singleton that holds everything.
@main
struct MoEServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe-serve",
        abstract: "Distributed expert-parallel MoE inference.",
        subcommands: [Serve.self, Run.self, Logits.self, Tokenize.self, Detokenize.self, Synth.self, SynthDraft.self])
}
