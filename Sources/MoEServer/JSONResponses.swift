import Foundation
import Hummingbird

/// The one encoder of every JSON the server sends (responses, stream chunks, stored job results): sorted keys, no
/// escaped slashes. JSONEncoder is Sendable; encoding with it from several threads at once is safe.
let wireEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return e
}()

/// `value` as wire JSON text (an encoding failure, which the server's own types never produce, gives "{}").
func wireJSON<T: Encodable>(_ value: T) -> String {
    String(decoding: (try? wireEncoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
}

/// A response whose body is JSON bytes.
func jsonResponse(data: Data, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Serialises an Encodable value as the JSON body of a response.
func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    jsonResponse(data: (try? wireEncoder.encode(value)) ?? Data("{}".utf8), status: status)
}

/// A JSON object built as a dictionary (the statistics snapshot, other APIs' answers) as wire JSON: sorted keys, no
/// escaped slashes, as the encoder writes.
func wireData(object: [String: Any]) -> Data {
    (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
}

func wireJSON(object: [String: Any]) -> String { String(decoding: wireData(object: object), as: UTF8.self) }

/// A dictionary as the JSON body of a response.
func jsonResponse(object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
    jsonResponse(data: wireData(object: object), status: status)
}

/// `prefix` followed by 24 random lowercase hex digits: completion, chat and job ids.
func randomId(_ prefix: String) -> String {
    prefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
}
