import ArgumentParser
import Foundation
import MoECtlKit

/// `--server` and `--token`, on every subcommand.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "moe-serve base URL (default: $MOE_SERVER, else \(ServerEndpoint.defaultURL)).", valueName: "URL"))
    var server: String?

    @Option(help: ArgumentHelp(
        "API token, sent as 'Authorization: Bearer TOKEN' (default: $MOE_API_TOKEN).", valueName: "TOKEN"))
    var token: String?

    func endpoint() throws -> ServerEndpoint {
        try ServerEndpoint.resolve(serverFlag: server, tokenFlag: token,
                                   environment: ProcessInfo.processInfo.environment)
    }

    /// A bad URL (flag or MOE_SERVER) is a usage error, reported before anything is sent.
    func validate() throws {
        do {
            _ = try endpoint()
        } catch let MoECtlError.usage(message) {
            throw ValidationError(message)
        }
    }
}
