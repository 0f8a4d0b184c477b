import ArgumentParser
import MoECtlKit

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")

    @Flag(help: "Print the server's JSON instead of a table.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await JobActions.list(json: json, client: $0, console: $1) }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one job.")

    @Argument(help: "The job id.") var jobID: String
    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await JobActions.status(id: jobID, json: json, client: $0, console: $1) }
    }
}

struct Results: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a job's finished results as JSON lines (redirect to a file).",
        discussion: "One object per finished prompt, in prompt order; the count goes to stderr.")

    @Argument(help: "The job id.") var jobID: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await JobActions.results(id: jobID, client: $0, console: $1) }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job.")

    @Argument(help: "The job id.") var jobID: String
    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await JobActions.cancel(id: jobID, json: json, client: $0, console: $1) }
    }
}
