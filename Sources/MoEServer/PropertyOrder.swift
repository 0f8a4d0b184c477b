import Foundation
import Hummingbird

/// The order in which a request's JSON wrote each object's `properties`, so that a JSON schema's keys are generated
/// in the schema's order (as xgrammar, llguidance and OpenAI's strict mode generate them: a Pydantic model's
/// `reasoning` before its `answer`). JSON decoding keeps no key order, so a schema reaches the grammar as unordered
/// dictionaries, whichever route or field brought it (response_format, guided_json, a tool's parameters, the
/// Responses and Messages APIs' formats); this reads the raw body (once, when a schema is first compiled) and answers
/// by the set of property names: an object's names in the order written, the first such object's where two list the
/// same names in different orders.
final class PropertyOrder: @unchecked Sendable {
    private let body: Data
    private let lock = NSLock()
    private var orders: [Set<String>: [String]]?

    init(_ body: Data) { self.body = body }

    /// The request being served's (set by PropertyOrder.Middleware), if any.
    @TaskLocal static var current: PropertyOrder?

    func order(_ names: Set<String>) -> [String]? {
        lock.withLock {
            if orders == nil { orders = Self.orders(in: body) }
            return orders?[names]
        }
    }

    static func orders(in body: Data) -> [Set<String>: [String]] {
        guard let text = String(data: body, encoding: .utf8), let root = try? OrderedJSON.parse(text) else { return [:] }
        var out: [Set<String>: [String]] = [:]
        func walk(_ v: OrderedJSON) {
            switch v {
            case .object(let members):
                for m in members {
                    if m.key == "properties", case .object(let props) = m.value {
                        let names = props.map(\.key)
                        if out[Set(names)] == nil { out[Set(names)] = names }
                    }
                    walk(m.value)
                }
            case .array(let items): items.forEach(walk)
            default: break
            }
        }
        walk(root)
        return out
    }

    /// Buffers a POST request's body and serves the request with its PropertyOrder; a body past `maxBytes` is a 413
    /// here, as the routes would answer it.
    struct Middleware<Context: RequestContext>: RouterMiddleware {
        let maxBytes: Int
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            guard request.method == .post else { return try await next(request, context) }
            var request = request
            let buffer: ByteBuffer
            do { buffer = try await request.collectBody(upTo: maxBytes) } catch {
                throw APIError.bodyTooLarge(maxBytes)
            }
            return try await PropertyOrder.$current.withValue(PropertyOrder(Data(buffer: buffer))) { try await next(request, context) }
        }
    }
}
