import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Maps URLSession's failures to moectl errors: "no answer" failures become `.unreachable` (exit 3).
enum TransportError {
    static func map(_ error: any Error, server: String) -> any Error {
        if error is MoECtlError { return error }
        guard let urlError = error as? URLError else {
            return MoECtlError.unreachable(server: server, reason: "\(error)")
        }
        switch urlError.code {
        case .cannotConnectToHost: return MoECtlError.unreachable(server: server, reason: "connection refused")
        case .cannotFindHost, .dnsLookupFailed: return MoECtlError.unreachable(server: server, reason: "host not found")
        case .timedOut: return MoECtlError.unreachable(server: server, reason: "timed out")
        case .networkConnectionLost: return MoECtlError.unreachable(server: server, reason: "connection lost")
        case .notConnectedToInternet: return MoECtlError.unreachable(server: server, reason: "no network")
        case .badServerResponse, .cannotParseResponse, .zeroByteResource:
            return MoECtlError.unexpectedResponse("malformed HTTP response (\(urlError.localizedDescription))")
        default: return MoECtlError.unreachable(server: server, reason: urlError.localizedDescription)
        }
    }

    /// The `HTTPFailure` for a non-2xx answer, preferring the documented error body's message.
    static func failure(for response: HTTPURLResponse, body: Data, sentToken: Bool) -> HTTPFailure {
        let retryAfter = response.value(forHTTPHeaderField: "Retry-After")
        if let error = ServerErrorBody.decode(body) {
            return HTTPFailure(status: response.statusCode, message: error.message, type: error.type,
                               code: error.code, retryAfter: retryAfter, sentToken: sentToken)
        }
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let message = text.isEmpty ? HTTPURLResponse.localizedString(forStatusCode: response.statusCode) : Snippet.of(text)
        return HTTPFailure(status: response.statusCode, message: message, retryAfter: retryAfter, sentToken: sentToken)
    }
}
