import Foundation
import Testing
@testable import MoECtlKit

/// End-to-end: the built `moectl` binary against `Support/fake_server.py`, a protocol stand-in with
/// canned answers. These tests pin moectl's behaviour on the wire and at the shell (stdout, stderr,
/// exit status); the real server's behaviour is tested in the server package.
/// Serialized: each test starts a Python server and moectl processes, and the machine is small.
@Suite("End to end against the protocol stand-in", .serialized)
struct EndToEndTests {}

extension EndToEndTests {
    @Suite("generate")
    struct Generate {
        @Test func streamsTextToStdoutAndStatsToStderr() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "Write a haiku about routers", "--max-tokens", "4"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout == "Silicon routers hum,\n")
                #expect(run.stderr.hasPrefix("4 tokens in "))
                #expect(run.stderr.contains("tok/s") && run.stderr.contains("finish: length"))

                let body = try #require(try await server.recordedRequests().last?.body)
                #expect(body["stream"] == .bool(true))
                #expect(body["stream_options"]?["include_usage"] == .bool(true))
                #expect(body["max_tokens"] == .number(4))
                #expect(body["prompt"] == .string("Write a haiku about routers"))
            }
        }

        @Test func noStreamMakesOneNonStreamingRequest() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "hi", "--no-stream"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout == "Silicon routers hum, packets find their way home.\n")
                #expect(run.stderr.hasPrefix("10 tokens in "))
                #expect(try await server.recordedRequests().last?.body?["stream"] == .bool(false))
            }
        }

        @Test func jsonPrintsTheServersResponseObject() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "hi", "--json", "--max-tokens", "2"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                let response = try JSONDecoder().decode(CompletionResponse.self, from: Data(run.stdout.utf8))
                #expect(response.choices.first?.text == "Silicon routers")
                #expect(response.usage?.completionTokens == 2)
            }
        }

        @Test func samplingFlagsAreSentAsRequestFields() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "hi", "--no-stream", "--temperature", "0.5", "--top-p", "0.9",
                                                "--top-k", "40", "--seed", "3", "--stop", "A", "--stop", "\n\n",
                                                "--presence-penalty", "0.5", "--frequency-penalty=-0.25",
                                                "--repetition-penalty", "1.1", "--min-tokens", "2", "--max-tokens", "8",
                                                "--stop-token-id", "7", "--stop-token-id", "9", "--min-p", "0.05"],
                                               against: server)
                #expect(run.status == 0, "\(run.stderr)")
                let body = try #require(try await server.recordedRequests().last?.body)
                #expect(body["temperature"] == .number(0.5))
                #expect(body["top_p"] == .number(0.9))
                #expect(body["top_k"] == .number(40))
                #expect(body["seed"] == .number(3))
                #expect(body["stop"] == .array([.string("A"), .string("\n\n")]))
                #expect(body["presence_penalty"] == .number(0.5) && body["frequency_penalty"] == .number(-0.25))
                #expect(body["repetition_penalty"] == .number(1.1) && body["min_tokens"] == .number(2))
                #expect(body["stop_token_ids"] == .array([.number(7), .number(9)]) && body["min_p"] == .number(0.05))
                let bad = try await Moectl.run(["generate", "hi", "--presence-penalty", "3"], against: server)
                #expect(bad.status == 64 && bad.stderr.contains("--presence-penalty must be between -2 and 2"), "\(bad.stderr)")
            }
        }

        /// --json-object, --json-schema FILE, --regex, --choice and --grammar FILE become the server's response_format,
        /// guided_regex, guided_choice and grammar; more than one, or a schema file that is not a JSON object, is a usage error.
        @Test func outputConstraintFlagsAreSentAsTheServersFields() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moectl-schema-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let schema = dir.appendingPathComponent("s.json"), bad = dir.appendingPathComponent("bad.json")
            try #"{"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2.5]}}, "required": ["n"]}"#
                .write(to: schema, atomically: true, encoding: .utf8)
            try "[1, 2]".write(to: bad, atomically: true, encoding: .utf8)
            try await FakeServer.with { server in
                func body(_ flags: [String]) async throws -> JSONValue? {
                    let run = try await Moectl.run(["generate", "hi", "--no-stream"] + flags, against: server)
                    #expect(run.status == 0, "\(run.stderr)")
                    return try await server.recordedRequests().last?.body
                }
                #expect(try await body(["--json-object"])?["response_format"] == .object(["type": .string("json_object")]))
                let s = try await body(["--json-schema", schema.path])?["response_format"]
                #expect(s?["type"] == .string("json_schema"))
                #expect(s?["json_schema"]?["schema"]?["properties"]?["n"]?["enum"] == .array([.number(1), .number(2.5)]))
                #expect(s?["json_schema"]?["schema"]?["required"] == .array([.string("n")]))
                #expect(try await body(["--regex", #"\d+"#])?["guided_regex"] == .string(#"\d+"#))
                #expect(try await body(["--choice", "yes", "--choice", "no"])?["guided_choice"] == .array([.string("yes"), .string("no")]))
                let gbnf = schema.deletingLastPathComponent().appendingPathComponent("yes-no.gbnf")
                try Data(#"root ::= "yes" | "no""#.utf8).write(to: gbnf)
                #expect(try await body(["--grammar", gbnf.path])?["grammar"] == .string(#"root ::= "yes" | "no""#))
                let two = try await Moectl.run(["generate", "hi", "--json-object", "--regex", "a"], against: server)
                #expect(two.status == 64 && two.stderr.contains("at most one of"), "\(two.stderr)")
                let notObject = try await Moectl.run(["generate", "hi", "--json-schema", bad.path], against: server)
                #expect(notObject.status == 64 && notObject.stderr.contains("is not a JSON object"), "\(notObject.stderr)")
            }
        }

        @Test func promptDashIsReadFromStandardInput() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "-", "--no-stream"], against: server, stdin: "from stdin\n")
                #expect(run.status == 0, "\(run.stderr)")
                #expect(try await server.recordedRequests().last?.body?["prompt"] == .string("from stdin"))
            }
        }

        @Test func streamEndingWithoutDoneIsAServerError() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "__nodone__", "--max-tokens", "2"], against: server)
                #expect(run.status == 2)
                #expect(run.stdout == "Silicon routers\n")
                #expect(run.stderr.contains("before [DONE]"))
            }
        }

        @Test func outOfRangeFlagIsAUsageError() async throws {
            let run = try await Moectl.run(["generate", "hi", "--top-p", "2"])
            #expect(run.status == 64)
            #expect(run.stderr.contains("--top-p must be in (0, 1]"))
        }
    }
}

extension EndToEndTests {
    @Suite("submit, jobs, status, results, cancel")
    struct Jobs {
        static let threePrompts = "\"first\"\n\n{\"prompt\": \"second\", \"max_tokens\": 8}\n\"third\"\n"

        /// Submits `contents` and returns the job id moectl printed.
        private func submit(_ contents: String = threePrompts, to server: FakeServer) async throws -> String {
            try await withTemporaryFile(contents) { path in
                let run = try await Moectl.run(["submit", path], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                return run.stdout.trimmingCharacters(in: .newlines)
            }
        }

        @Test func submitPrintsOnlyTheJobIdAndSendsEveryPrompt() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile(Self.threePrompts) { path in
                    let run = try await Moectl.run(["submit", path, "--temperature", "0"], against: server)
                    #expect(run.status == 0, "\(run.stderr)")
                    #expect(run.stdout.wholeMatch(of: /job_[0-9a-f]+\n/) != nil, "\(run.stdout)")
                    #expect(run.stderr.isEmpty)
                }
                let body = try #require(try await server.recordedRequests().last?.body)
                #expect(body["max_tokens"] == .number(128))
                #expect(body["temperature"] == .number(0))
                #expect(body["prompts"] == .array([
                    .object(["prompt": .string("first")]),
                    .object(["prompt": .string("second"), "max_tokens": .number(8)]),
                    .object(["prompt": .string("third")]),
                ]))
            }
        }

        @Test func submitWaitPollsUntilCompletedAndExitsZero() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile(Self.threePrompts) { path in
                    let run = try await Moectl.run(["submit", path, "--wait", "--poll-interval", "0.05"], against: server)
                    #expect(run.status == 0, "\(run.stderr)")
                    let id = run.stdout.trimmingCharacters(in: .newlines)
                    // stderr is not a terminal here: one line per change, ending with the final state.
                    let lines = run.stderr.split(separator: "\n").map(String.init)
                    #expect(lines.first == "\(id) queued [----------] 0/3")
                    #expect(lines.last == "\(id) completed [##########] 3/3")
                    #expect(!run.stderr.contains("\r"))
                }
            }
        }

        @Test func submitWaitOnAFailedJobExitsFour() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile("\"a\"\n\"__fail__\"\n") { path in
                    let run = try await Moectl.run(["submit", path, "--wait", "--poll-interval", "0.05"], against: server)
                    #expect(run.status == 4)
                    #expect(run.stderr.contains("ended failed (1/2 completed, 1 failed)"))
                }
            }
        }

        @Test func submitWaitOnACancelledJobExitsFour() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile("\"__cancel__\"\n") { path in
                    let run = try await Moectl.run(["submit", path, "--wait", "--poll-interval", "0.05"], against: server)
                    #expect(run.status == 4)
                    #expect(run.stderr.contains("ended cancelled"))
                }
            }
        }

        @Test func submitWaitJSONPrintsTheFinalJobObjectOnly() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile(Self.threePrompts) { path in
                    let run = try await Moectl.run(["submit", path, "--wait", "--json", "--poll-interval", "0.05"],
                                                   against: server)
                    #expect(run.status == 0, "\(run.stderr)")
                    let job = try JSONDecoder().decode(Job.self, from: Data(run.stdout.utf8))
                    #expect(job.status == .completed && job.completed == 3)
                }
            }
        }

        @Test func submitReadsPromptsFromStandardInput() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["submit", "-"], against: server, stdin: "\"one\"\n\"two\"\n")
                #expect(run.status == 0, "\(run.stderr)")
                #expect(try await server.recordedRequests().last?.body?["prompts"] ==
                    .array([.object(["prompt": .string("one")]), .object(["prompt": .string("two")])]))
            }
        }

        @Test func badJSONLinesAreAUsageErrorAndNothingIsSubmitted() async throws {
            try await FakeServer.with { server in
                try await withTemporaryFile("\"ok\"\n\n{\"prompt\": \"a\"\n") { path in
                    let run = try await Moectl.run(["submit", path], against: server)
                    #expect(run.status == 64)
                    #expect(run.stderr == "error: \(path) line 3: not valid JSON\n")
                    #expect(run.stdout.isEmpty)
                }
                #expect(try await server.recordedRequests().isEmpty)
            }
        }

        @Test func unreadablePromptFileIsAUsageError() async throws {
            let run = try await Moectl.run(["submit", "/nonexistent/prompts.jsonl"])
            #expect(run.status == 64)
            #expect(run.stderr.contains("cannot read prompt file '/nonexistent/prompts.jsonl'"))
        }

        @Test func jobsListsJobsNewestFirst() async throws {
            try await FakeServer.with { server in
                let older = try await submit(to: server)
                let newer = try await submit(to: server)
                let table = try await Moectl.run(["jobs"], against: server)
                #expect(table.status == 0, "\(table.stderr)")
                let lines = table.stdout.split(separator: "\n").map(String.init)
                #expect(lines.count == 3)
                #expect(lines[0].hasPrefix("ID") && lines[0].contains("STATUS") && lines[0].contains("CREATED"))
                #expect(lines[1].hasPrefix(newer) && lines[1].contains("queued") && lines[1].contains("[----------] 0/3"))
                #expect(lines[2].hasPrefix(older))

                let json = try await Moectl.run(["jobs", "--json"], against: server)
                let list = try JSONDecoder().decode(JobList.self, from: Data(json.stdout.utf8))
                #expect(list.data.map(\.id) == [newer, older])
            }
        }

        @Test func statusShowsOneJobWithAProgressBar() async throws {
            try await FakeServer.with { server in
                let id = try await submit(to: server)
                _ = try await Moectl.run(["status", id], against: server)  // the stand-in advances on each read
                let run = try await Moectl.run(["status", id], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout.contains("id         \(id)"))
                #expect(run.stdout.contains("status     running"))
                #expect(run.stdout.contains("progress   [######----] 2/3"))

                let json = try await Moectl.run(["status", id, "--json"], against: server)
                #expect(try JSONDecoder().decode(Job.self, from: Data(json.stdout.utf8)).id == id)
            }
        }

        @Test func resultsWritesOneJSONLinePerFinishedPrompt() async throws {
            try await FakeServer.with { server in
                let id = try await withTemporaryFile(Self.threePrompts) { path in
                    let run = try await Moectl.run(["submit", path, "--wait", "--poll-interval", "0.05"], against: server)
                    return run.stdout.trimmingCharacters(in: .newlines)
                }
                let run = try await Moectl.run(["results", id], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                let lines = run.stdout.split(separator: "\n")
                #expect(lines.count == 3)
                let indices = try lines.map { try JSONDecoder().decode(JobResultLine.self, from: Data($0.utf8)).index }
                #expect(indices == [0, 1, 2])
                #expect(run.stdout.contains(#""prompt": "second""#))
                #expect(run.stderr == "3 results for job \(id)\n")
            }
        }

        @Test func cancelReportsTheCancelledJob() async throws {
            try await FakeServer.with { server in
                let id = try await submit(to: server)
                let run = try await Moectl.run(["cancel", id], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout == "\(id) cancelled [----------] 0/3\n")
                let json = try await Moectl.run(["cancel", id, "--json"], against: server)
                #expect(try JSONDecoder().decode(Job.self, from: Data(json.stdout.utf8)).status == .cancelled)
                #expect(try await server.recordedRequests().filter { $0.method == "DELETE" }.count == 2)
            }
        }

        @Test func unknownJobIsAServerErrorWithItsMessage() async throws {
            try await FakeServer.with { server in
                for command in ["status", "results", "cancel"] {
                    let run = try await Moectl.run([command, "job_nope"], against: server)
                    #expect(run.status == 2, "\(command)")
                    #expect(run.stderr == "error: job 'job_nope' not found (HTTP 404)\n", "\(command)")
                }
            }
        }
    }
}

extension EndToEndTests {
    @Suite("health and models")
    struct Info {
        @Test func healthShowsTheServerState() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["health"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout.hasPrefix("status   ok\nmodel    demo-mixtral\nworkers  2\n"))
                let json = try await Moectl.run(["health", "--json"], against: server)
                #expect(try JSONDecoder().decode(HealthStatus.self, from: Data(json.stdout.utf8)).status == "ok")
            }
        }

        @Test func modelsListsTheServedModel() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["models"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(run.stdout.hasPrefix("ID            MAX LEN  OWNED BY   CREATED\ndemo-mixtral  1024     moe-serve  "))
                let json = try await Moectl.run(["models", "--json"], against: server)
                #expect(try JSONDecoder().decode(ModelList.self, from: Data(json.stdout.utf8)).data.map(\.id) == ["demo-mixtral"])
            }
        }

        @Test func helpDocumentsTheExitStatuses() async throws {
            let run = try await Moectl.run(["--help"])
            #expect(run.status == 0)
            #expect(run.stdout.contains("Exit status:"))
            for code in ["0", "2", "3", "4", "64"] { #expect(run.stdout.contains("\n  \(code) "), "\(code)") }
        }
    }
}

extension EndToEndTests {
    @Suite("server and auth errors")
    struct Errors {
        @Test func tokenFlagIsSentAsBearerHeader() async throws {
            try await FakeServer.with(["--token", "s3cret"]) { server in
                let run = try await Moectl.run(["jobs", "--token", "s3cret"], against: server)
                #expect(run.status == 0, "\(run.stderr)")
                #expect(try await server.recordedRequests().last?.authorization == "Bearer s3cret")
            }
        }

        @Test func tokenComesFromTheEnvironmentAndTheFlagWins() async throws {
            try await FakeServer.with(["--token", "s3cret"]) { server in
                let fromEnv = try await Moectl.run(["models"], against: server, environment: ["MOE_API_TOKEN": "s3cret"])
                #expect(fromEnv.status == 0, "\(fromEnv.stderr)")
                let flagWins = try await Moectl.run(["models", "--token", "s3cret"], against: server,
                                                    environment: ["MOE_API_TOKEN": "wrong"])
                #expect(flagWins.status == 0, "\(flagWins.stderr)")
                let auths = try await server.recordedRequests().map(\.authorization)
                #expect(auths == ["Bearer s3cret", "Bearer s3cret"])
            }
        }

        @Test func serverComesFromTheEnvironment() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["health"], environment: ["MOE_SERVER": server.url])
                #expect(run.status == 0, "\(run.stderr)")
            }
        }

        @Test func missingTokenIsHTTP401ExitTwoWithAHint() async throws {
            try await FakeServer.with(["--token", "s3cret"]) { server in
                let run = try await Moectl.run(["jobs"], against: server)
                #expect(run.status == 2)
                #expect(run.stderr.hasPrefix("error: invalid or missing API token (HTTP 401)\n"))
                #expect(run.stderr.contains("MOE_API_TOKEN"))
            }
        }

        @Test func rateLimitIsHTTP429ExitTwoMentioningRetryAfter() async throws {
            try await FakeServer.with { server in
                for mode in [[], ["--no-stream"]] {
                    let run = try await Moectl.run(["generate", "__429__"] + mode, against: server)
                    #expect(run.status == 2)
                    #expect(run.stderr == "error: server overloaded, too many waiting requests (HTTP 429); "
                        + "the server asks to retry after 7 s (Retry-After)\n")
                    #expect(run.stdout.isEmpty)
                }
            }
        }

        @Test func errorWithoutAJSONBodyStillShowsTheStatus() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "__500__", "--no-stream"], against: server)
                #expect(run.status == 2)
                #expect(run.stderr == "error: Internal Server Error (HTTP 500)\n")
            }
        }

        @Test func unexpectedJSONIsExitTwoNotACrash() async throws {
            try await FakeServer.with { server in
                let run = try await Moectl.run(["generate", "__garbage__", "--no-stream"], against: server)
                #expect(run.status == 2)
                #expect(run.stderr.hasPrefix("error: unexpected response from the server: POST /v1/completions: missing field 'choices'"))
            }
        }

        @Test func connectionRefusedIsExitThreeWithHowToStartAServer() async throws {
            try await FakeServer.with { server in
                let url = "http://127.0.0.1:\(server.refusedPort)"
                for run in [try await Moectl.run(["health", "--server", url]),
                            try await Moectl.run(["generate", "hi"], environment: ["MOE_SERVER": url])] {
                    #expect(run.status == 3)
                    #expect(run.stderr.hasPrefix("error: cannot reach the moe-serve server at \(url) (connection refused). "
                        + "Is it running? Start one with: moe-serve serve --model DIR\n"))
                    #expect(run.stderr.contains("--server") && run.stderr.contains("MOE_SERVER"))
                }
            }
        }

        @Test func invalidServerURLIsAUsageError() async throws {
            let run = try await Moectl.run(["health", "--server", "ftp://nowhere"])
            #expect(run.status == 64)
            #expect(run.stderr.contains("invalid server URL 'ftp://nowhere'"))
        }
    }
}
