import DemoData
import ChangeEvents
import Testing

@Suite("Debezium and minimal envelope decoding")
struct ChangeEventDecoderTests {
    let decoder = ChangeEventDecoder()

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func debeziumUpdateWithoutSchema() throws {
        let value = #"""
        {"before":{"id":7,"price":100},"after":{"id":7,"price":120},
         "source":{"version":"2.5.0.Final","connector":"postgresql","name":"portal","ts_ms":1,"db":"portal",
                   "schema":"public","table":"listing_prices","txId":1,"lsn":2},
         "op":"u","ts_ms":3,"transaction":null}
        """#
        let change = try decoder.decode(key: bytes(#"{"id":7}"#), value: bytes(value))
        #expect(change == SourceChange(
            table: "public.listing_prices", operation: .update, key: ["id": .integer(7)],
            before: ["id": .integer(7), "price": .integer(100)], after: ["id": .integer(7), "price": .integer(120)]))
        #expect(change.value(ofColumn: "price") == .integer(120))
    }

    @Test func debeziumCreateWithSchemaWrapper() throws {
        let value = #"""
        {"schema":{"type":"struct","fields":[],"optional":false,"name":"portal.public.listings.Envelope"},
         "payload":{"before":null,"after":{"id":"a-1","title":"Loft"},
                    "source":{"schema":"public","table":"listings"},"op":"c","ts_ms":3}}
        """#
        let key = #"{"schema":{"type":"struct","fields":[{"field":"id","type":"string"}]},"payload":{"id":"a-1"}}"#
        let change = try decoder.decode(key: bytes(key), value: bytes(value))
        #expect(change.table == "public.listings")
        #expect(change.operation == .create)
        #expect(change.key == ["id": .string("a-1")])
        #expect(change.before == nil)
        #expect(change.after?["title"] == .string("Loft"))
    }

    @Test func debeziumDeleteAndSnapshotRead() throws {
        let delete = try decoder.decode(
            key: nil, value: bytes(#"{"op":"d","source":{"table":"listings"},"before":{"id":1},"after":null}"#))
        #expect(delete == SourceChange(table: "listings", operation: .delete, before: ["id": .integer(1)]))
        let read = try decoder.decode(
            key: nil, value: bytes(#"{"op":"r","source":{"schema":"s","table":"t"},"after":{"id":2}}"#))
        #expect(read.operation == .snapshotRead)
        #expect(read.table == "s.t")
    }

    @Test func tombstonesTakeTheirTableFromTheTopic() throws {
        let change = try decoder.decode(key: bytes(#"{"id":9}"#), value: nil, topic: "portal.public.listings")
        #expect(change == SourceChange(table: "public.listings", operation: .tombstone, key: ["id": .integer(9)]))
        let wrapped = try decoder.decode(
            key: bytes(#"{"id":9}"#), value: bytes(#"{"schema":{},"payload":null}"#), topic: "p.s.t")
        #expect(wrapped.operation == .tombstone)
        #expect(throws: ChangeEventError.self) { try decoder.decode(key: bytes(#"{"id":9}"#), value: nil) }
        let badTopic = #expect(throws: ChangeEventError.self) {
            try decoder.decode(key: bytes(#"{"id":9}"#), value: nil, topic: "listings")
        }
        #expect(badTopic?.code == .invalidField)
        let noKey = #expect(throws: ChangeEventError.self) { try decoder.decode(key: nil, value: nil, topic: "a.b.c") }
        #expect(noKey?.code == .missingField)
    }

    @Test func minimalEnvelope() throws {
        #expect(try decoder.decode(key: nil, value: bytes(#"{"table":"public.listings","id":42}"#))
            == SourceChange(table: "public.listings", operation: .change, key: ["id": .integer(42)]))
        #expect(try decoder.decode(key: nil, value: bytes(#"{"table":"agents","id":"x-1"}"#)).key == ["id": .string("x-1")])
    }

    @Test(arguments: [
        (#"{"op":"u","source":{"table":"t"},"after":{"id":1}"#, ChangeEventError.Code.malformedJSON, nil as String?),
        (#"[1,2]"#, .unknownEnvelope, nil),
        (#""text""#, .unknownEnvelope, nil),
        (#"{"id":1}"#, .unknownEnvelope, nil),
        (#"{"op":"t","source":{"table":"t"}}"#, .unsupportedOperation, "op"),
        (#"{"op":"m","source":{"table":"t"}}"#, .unsupportedOperation, "op"),
        (#"{"op":1,"source":{"table":"t"}}"#, .invalidField, "op"),
        (#"{"op":"c","after":{"id":1}}"#, .missingField, "source"),
        (#"{"op":"c","source":"x","after":{"id":1}}"#, .invalidField, "source"),
        (#"{"op":"c","source":{},"after":{"id":1}}"#, .missingField, "source.table"),
        (#"{"op":"c","source":{"table":""},"after":{"id":1}}"#, .invalidField, "source.table"),
        (#"{"op":"c","source":{"table":"t","schema":5},"after":{"id":1}}"#, .invalidField, "source.schema"),
        (#"{"op":"c","source":{"table":"t"}}"#, .missingField, "after"),
        (#"{"op":"u","source":{"table":"t"},"after":[1]}"#, .invalidField, "after"),
        (#"{"op":"d","source":{"table":"t"},"after":null}"#, .missingField, "before"),
        (#"{"table":"t"}"#, .missingField, "id"),
        (#"{"table":"t","id":null}"#, .missingField, "id"),
        (#"{"table":"t","id":1.5}"#, .invalidField, "id"),
        (#"{"table":"t","id":""}"#, .invalidField, "id"),
        (#"{"table":3,"id":1}"#, .invalidField, "table"),
    ])
    func rejectsBadEvents(value: String, code: ChangeEventError.Code, field: String?) {
        let error = #expect(throws: ChangeEventError.self) { try decoder.decode(key: nil, value: bytes(value)) }
        #expect(error?.code == code)
        #expect(error?.field == field)
        // The description names the problem, never the payload.
        #expect(error.map { !$0.description.contains("{") } == true)
    }

    @Test func badKeysAreTypedErrors() {
        let notObject = #expect(throws: ChangeEventError.self) {
            try decoder.decode(key: bytes("[1]"), value: bytes(#"{"table":"t","id":1}"#))
        }
        #expect(notObject?.code == .invalidField)
        let malformed = #expect(throws: ChangeEventError.self) {
            try decoder.decode(key: bytes("{"), value: bytes(#"{"table":"t","id":1}"#))
        }
        #expect(malformed?.code == .malformedJSON)
    }

    static func randomChange(_ random: inout SplitMix64) -> SourceChange {
        let operation = SourceChange.Operation.allCases.randomElement(using: &random)!
        let table = ["public.listings", "public.listing_prices", "media.photos", "agents"].randomElement(using: &random)!
        let id: JSONValue = Bool.random(using: &random)
            ? .integer(Int64.random(in: 1...1_000_000_000, using: &random)) : .string("k-\(random.next() % 1000)")
        var key: [String: JSONValue] = ["id": id]
        if operation != .change, Bool.random(using: &random) { key["version"] = .integer(Int64(random.next() % 9)) }
        var row = RandomJSON.row(&random)
        row["id"] = id
        switch operation {
        case .create, .snapshotRead: return SourceChange(table: table, operation: operation, key: key, after: row)
        case .update:
            return SourceChange(
                table: table, operation: operation, key: key, before: Bool.random(using: &random) ? row : nil,
                after: RandomJSON.row(&random))
        case .delete: return SourceChange(table: table, operation: operation, key: key, before: ["id": id])
        case .tombstone: return SourceChange(table: table.contains(".") ? table : "public.\(table)", operation: operation, key: key)
        case .change: return SourceChange(table: table, operation: operation, key: ["id": id])
        }
    }

    func encode(_ change: SourceChange, _ encoder: ChangeEventEncoder) -> (key: [UInt8]?, value: [UInt8]?) {
        if change.operation == .change { return (nil, encoder.minimalValue(change)) }
        return (encoder.debeziumKey(change), encoder.debeziumValue(change))
    }

    /// Encoding a change in any envelope and decoding it gives the same change back.
    @Test(arguments: [false, true])
    func changesRoundTripThroughEveryEnvelope(includesSchema: Bool) throws {
        var random = SplitMix64(seed: includesSchema ? 11 : 12)
        let encoder = ChangeEventEncoder(includesSchema: includesSchema)
        for _ in 0..<2000 {
            let change = Self.randomChange(&random)
            let (key, value) = encode(change, encoder)
            let decoded = try decoder.decode(key: key, value: value, topic: "portal.\(change.table)")
            #expect(decoded == change)
        }
    }

    /// Random byte-level mutations of valid events either decode or throw a typed error; never crash, never
    /// produce a change without a table.
    @Test func mutatedEventsNeverCrash() {
        var random = SplitMix64(seed: 0xF022)
        let encoders = [ChangeEventEncoder(includesSchema: false), ChangeEventEncoder(includesSchema: true)]
        var decodedCount = 0
        var errorCodes: Set<ChangeEventError.Code> = []
        let interesting: [UInt8] = Array(#"{}[],:"\ -0.5e+tfnu"#.utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xE2, 0xF0, 0xFF]
        for _ in 0..<20_000 {
            let change = Self.randomChange(&random)
            let (key, value) = encode(change, encoders.randomElement(using: &random)!)
            var bytes = value ?? []
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                guard !bytes.isEmpty else { break }
                let position = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<5, using: &random) {
                case 0: bytes[position] = interesting.randomElement(using: &random)!
                case 1: bytes.remove(at: position)
                case 2: bytes.insert(interesting.randomElement(using: &random)!, at: position)
                case 3: bytes.removeSubrange(position...)
                default:
                    let end = min(bytes.count, position + Int.random(in: 1...16, using: &random))
                    bytes.insert(contentsOf: bytes[position..<end], at: position)
                }
            }
            do {
                let decoded = try decoder.decode(key: key, value: bytes, topic: "portal.public.listings")
                #expect(!decoded.table.isEmpty)
                decodedCount += 1
            } catch {
                errorCodes.insert(error.code)
            }
        }
        // The mutations must actually exercise both paths, or the property says nothing.
        #expect(decodedCount > 0)
        #expect(errorCodes.contains(.malformedJSON))
        #expect(errorCodes.count >= 3)
    }
}
