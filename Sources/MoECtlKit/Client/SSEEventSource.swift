import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Runs one streaming request and yields its server-sent events as bytes arrive.
///
/// A delegate is used rather than a completion handler because the completion handler only fires
/// once the whole body is in, which would turn streaming into one long wait.
enum SSEEventSource {
    static func events(for request: URLRequest, server: String, sentToken: Bool)
        -> AsyncThrowingStream<SSEEvent, any Error>
    {
        AsyncThrowingStream { continuation in
            let delegate = SSEStreamDelegate(continuation: continuation, server: server, sentToken: sentToken)
            let queue = OperationQueue()
            queue.maxConcurrentOperationCount = 1  // callbacks in order, one at a time
            let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: queue)
            let task = session.dataTask(with: request)
            // The consumer stopping early (an error while printing, Ctrl-C) must not leave the request open.
            continuation.onTermination = { _ in task.cancel() }
            task.resume()
        }
    }
}

/// Feeds response bytes through `SSEParser`. All mutable state is behind `lock`; URLSession calls
/// it on a serial queue anyway, the lock is what makes that checkable.
private final class SSEStreamDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var parser = SSEParser()
    /// Body of an answer that is not an event stream (an HTTP error, or JSON from a server that
    /// ignored `stream`), kept whole for the error message.
    private var otherBody = Data()
    private let continuation: AsyncThrowingStream<SSEEvent, any Error>.Continuation
    private let server: String
    private let sentToken: Bool

    init(continuation: AsyncThrowingStream<SSEEvent, any Error>.Continuation, server: String, sentToken: Bool) {
        self.continuation = continuation
        self.server = server
        self.sentToken = sentToken
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock()
        defer { lock.unlock() }
        guard let response = dataTask.response as? HTTPURLResponse, Self.isEventStream(response) else {
            otherBody.append(data)
            return
        }
        for event in parser.feed(data) { continuation.yield(event) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        lock.lock()
        defer {
            lock.unlock()
            // A session keeps its delegate alive until invalidated.
            session.finishTasksAndInvalidate()
        }
        if let error {
            continuation.finish(throwing: TransportError.map(error, server: server))
            return
        }
        guard let response = task.response as? HTTPURLResponse else {
            continuation.finish(throwing: MoECtlError.unexpectedResponse("not an HTTP response"))
            return
        }
        guard (200..<300).contains(response.statusCode) else {
            let failure = TransportError.failure(for: response, body: otherBody, sentToken: sentToken)
            continuation.finish(throwing: MoECtlError.http(failure))
            return
        }
        guard Self.isEventStream(response) else {
            let type = response.value(forHTTPHeaderField: "Content-Type") ?? "no content type"
            continuation.finish(throwing: MoECtlError.unexpectedResponse(
                "expected an event stream (text/event-stream) but got \(type)"))
            return
        }
        for event in parser.finish() { continuation.yield(event) }
        continuation.finish()
    }

    private static func isEventStream(_ response: HTTPURLResponse) -> Bool {
        (200..<300).contains(response.statusCode)
            && (response.value(forHTTPHeaderField: "Content-Type")?.lowercased().hasPrefix("text/event-stream") ?? false)
    }
}
