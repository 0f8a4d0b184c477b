import ArgumentParser
import MoECtlKit

/// Entry point: flag definitions only. Behaviour lives in MoECtlKit so that it can be tested.
@main
struct MoECtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moectl",
        abstract: "Command-line client for a moe-serve inference server.",
        discussion: ExitStatus.helpDiscussion,
        version: "0.1.0",
        subcommands: [
            Generate.self, Submit.self, Jobs.self, Status.self, Results.self, Cancel.self, Health.self, Models.self,
            Stats.self, Rebalance.self,
        ])
}

/// Runs a command body with the shared error reporting and exits with its status.
func execute(_ connection: ConnectionOptions, _ body: (APIClient, Console) async throws -> Void) async throws {
    let console = Console.standard()
    let status = await CommandRunner.run(console: console) {
        try await body(APIClient(endpoint: try connection.endpoint()), console)
    }
    if status != 0 { throw ExitCode(status) }
}
