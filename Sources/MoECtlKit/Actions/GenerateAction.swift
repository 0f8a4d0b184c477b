/// `moectl generate`.
public struct GenerateAction: Sendable {
    public var prompt: String
    public var sampling: SamplingParameters
    public var stream: Bool
    public var json: Bool

    public init(prompt: String, sampling: SamplingParameters, stream: Bool = true, json: Bool = false) {
        self.prompt = prompt
        self.sampling = sampling
        self.stream = stream
        self.json = json
    }

    public func run(client: APIClient, console: Console) async throws {
        // --json prints one response object, which only the non-streaming endpoint produces.
        if stream && !json {
            try await runStreaming(client: client, console: console)
        } else {
            try await runSingle(client: client, console: console)
        }
    }

    private func runSingle(client: APIClient, console: Console) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let response = try await client.complete(CompletionRequest(prompt: prompt, sampling: sampling))
        let seconds = (clock.now - start).seconds
        guard let choice = response.value.choices.first else {
            throw MoECtlError.unexpectedResponse("POST /v1/completions: the response has no choices")
        }
        if json {
            console.outRaw(response.raw)
        } else {
            console.out(choice.text + "\n")
        }
        let stats = GenerationStats(tokens: response.value.usage?.completionTokens, seconds: seconds,
                                    finishReason: choice.finishReason)
        console.errLine(stats.line)
    }

    private func runStreaming(client: APIClient, console: Console) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        var firstPiece: Duration?
        var pieces = 0
        var usage: TokenUsage?
        var finishReason: String?
        var sawDone = false

        let events = try client.streamCompletion(
            CompletionRequest(prompt: prompt, sampling: sampling, stream: true, includeUsage: true))
        do {
            stream: for try await event in events {
                switch try CompletionStreamEvent.decode(event.data) {
                case .done:
                    sawDone = true
                    break stream
                case .chunk(let chunk):
                    if let chunkUsage = chunk.usage { usage = chunkUsage }
                    guard let choice = chunk.choices.first else { continue }
                    if !choice.text.isEmpty {
                        if firstPiece == nil { firstPiece = clock.now - start }
                        pieces += 1
                        console.out(choice.text)
                    }
                    if let reason = choice.finishReason { finishReason = reason }
                }
            }
        } catch {
            // Whatever was printed stays; end its line so the error message starts on its own.
            if pieces > 0 { console.out("\n") }
            throw error
        }
        console.out("\n")
        guard sawDone else {
            throw MoECtlError.unexpectedResponse("the server closed the stream before [DONE]; the text may be cut short")
        }
        let stats = GenerationStats(tokens: usage?.completionTokens ?? pieces, tokensExact: usage != nil,
                                    seconds: (clock.now - start).seconds, firstTokenSeconds: firstPiece?.seconds,
                                    finishReason: finishReason)
        console.errLine(stats.line)
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
