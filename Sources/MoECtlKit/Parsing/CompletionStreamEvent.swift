import Foundation

/// The meaning of one SSE `data:` payload of a `/v1/completions` stream.
public enum CompletionStreamEvent: Equatable, Sendable {
    case chunk(CompletionResponse)
    case done

    public static let doneMarker = "[DONE]"

    public static func decode(_ data: String) throws -> CompletionStreamEvent {
        if data.trimmingCharacters(in: .whitespaces) == doneMarker { return .done }
        let bytes = Data(data.utf8)
        if let error = ServerErrorBody.decode(bytes) {
            throw MoECtlError.streamError(error.message)
        }
        do {
            return .chunk(try JSONDecoder().decode(CompletionResponse.self, from: bytes))
        } catch {
            throw MoECtlError.unexpectedResponse(
                "stream chunk is not a completion object (\(DecodingProblem.describe(error))): \(Snippet.of(data))")
        }
    }
}
