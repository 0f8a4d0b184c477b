import ArgumentParser
import MoECtlKit

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load balance per worker, a layers × experts heat map, speculation, throughput and latency.")

    @Option(help: "Refresh every N seconds until interrupted.") var watch: Double?
    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if let w = watch, w <= 0 { throw ValidationError("--watch must be a positive number of seconds") }
    }

    func run() async throws {
        try await execute(connection) { try await StatsActions.stats(json: json, watch: watch, client: $0, console: $1) }
    }
}

struct Rebalance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-place experts from the observed load (replicating hot ones), online, between steps.")

    @Flag(name: .customLong("dry-run"), help: "Only show the plan and its effect.") var dryRun = false
    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await StatsActions.rebalance(dryRun: dryRun, json: json, client: $0, console: $1) }
    }
}
