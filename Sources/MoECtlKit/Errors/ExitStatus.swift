/// moectl's exit statuses: the contract scripts rely on.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    /// A bug or an environment problem moectl did not anticipate (e.g. stdout cannot be written).
    case internalError = 1
    case serverError = 2
    case unreachable = 3
    case jobNotCompleted = 4
    /// 64 is EX_USAGE from sysexits.h, the same status ArgumentParser uses for its own validation errors.
    case usage = 64

    public static func of(_ error: any Error) -> ExitStatus {
        guard let error = error as? MoECtlError else { return .internalError }
        switch error {
        case .usage: return .usage
        case .http, .unexpectedResponse, .streamError: return .serverError
        case .unreachable: return .unreachable
        case .jobEnded: return .jobNotCompleted
        }
    }

    /// The text of `moectl --help`'s discussion section. ArgumentParser keeps these line breaks, so lines
    /// stay under 80 columns.
    public static let helpDiscussion = """
        Server and token come from --server and --token, else from the MOE_SERVER
        and MOE_API_TOKEN environment variables (default server: \(ServerEndpoint.defaultURL)).
        Prefer MOE_API_TOKEN: command lines are visible to other users.

        Exit status:
          0   success
          2   the server answered with an error (its message and HTTP status are
              printed), or with a response moectl could not understand
          3   the server could not be reached (not running, wrong --server)
          4   submit --wait: the job ended failed or cancelled
          64  usage error: bad flags, bad server URL, unreadable or malformed
              prompt file
        """
}
