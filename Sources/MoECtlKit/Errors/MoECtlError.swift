/// Every failure moectl reports on purpose. Each case maps to one exit status (see `ExitStatus`).
public enum MoECtlError: Error, Equatable, Sendable {
    /// Bad input from the user: flags, the prompt file, the server URL. Exit 64.
    case usage(String)
    /// The server answered with an HTTP error status. Exit 2.
    case http(HTTPFailure)
    /// The server answered 2xx with something that is not the documented shape. Exit 2.
    case unexpectedResponse(String)
    /// The server put an error event into a completion stream. Exit 2.
    case streamError(String)
    /// No answer at all: connection refused, unknown host, timeout. Exit 3.
    case unreachable(server: String, reason: String)
    /// `--wait` saw the job end in a status other than completed. Exit 4.
    case jobEnded(Job)
}

/// An HTTP error answer, reduced to what the user needs to see.
public struct HTTPFailure: Equatable, Sendable {
    public var status: Int
    public var message: String
    public var type: String?
    public var code: String?
    /// The raw `Retry-After` header (seconds, per the API contract).
    public var retryAfter: String?
    /// Whether the request carried a token: turns a 401 into advice on how to send one.
    public var sentToken: Bool

    public init(status: Int, message: String, type: String? = nil, code: String? = nil,
                retryAfter: String? = nil, sentToken: Bool = false) {
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.retryAfter = retryAfter
        self.sentToken = sentToken
    }
}
