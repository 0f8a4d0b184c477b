import Foundation

/// The stderr text for an error: one `error:` line, sometimes followed by a hint line.
public enum ErrorReport {
    public static func message(for error: any Error) -> String {
        guard let error = error as? MoECtlError else { return "error: \(error)" }
        switch error {
        case .usage(let message):
            return "error: \(message)"
        case .http(let failure):
            return message(for: failure)
        case .unexpectedResponse(let detail):
            return "error: unexpected response from the server: \(detail)"
        case .streamError(let message):
            return "error: the server reported an error during the stream: \(message)"
        case .unreachable(let server, let reason):
            return """
                error: cannot reach the moe-serve server at \(server) (\(reason)). Is it running? \
                Start one with: moe-serve serve --model DIR
                hint: to use another server, pass --server URL or set MOE_SERVER
                """
        case .jobEnded(let job):
            return "error: job \(job.id) ended \(job.status) (\(job.completed)/\(job.total) completed, \(job.failed) failed)"
        }
    }

    static func message(for failure: HTTPFailure) -> String {
        var text = "error: \(failure.message) (HTTP \(failure.status))"
        if failure.status == 429 {
            if let retryAfter = failure.retryAfter {
                let seconds = Int(retryAfter.trimmingCharacters(in: .whitespaces)).map { "\($0) s" } ?? retryAfter
                text += "; the server asks to retry after \(seconds) (Retry-After)"
            } else {
                text += "; the server is busy, retry later (no Retry-After given)"
            }
        }
        if failure.status == 401 {
            text += failure.sentToken
                ? "\nhint: the server rejected the token from --token/MOE_API_TOKEN"
                : "\nhint: this server needs an API token: set MOE_API_TOKEN or pass --token TOKEN"
        }
        return text
    }
}
