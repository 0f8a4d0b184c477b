import ArgumentParser
import MoECtlKit

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check that the server is up and show its state.")

    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await InfoActions.health(json: json, client: $0, console: $1) }
    }
}

struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the models the server serves.")

    @Flag(help: "Print the server's JSON.") var json = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await execute(connection) { try await InfoActions.models(json: json, client: $0, console: $1) }
    }
}
