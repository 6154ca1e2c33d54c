import DemoData
import ChangeEvents
import Testing

@Suite("Strict JSON parser")
struct JSONValueTests {
    @Test func parsesEveryKindOfValue() throws {
        let value = try JSONValue(parsing: #" {"a": [1, -0, 2.5, -1e3, true, false, null], "b": "x\u00e9\ud83d\ude00\n\"\\\/", "c": {}} "#)
        #expect(value == .object([
            "a": .array([.integer(1), .integer(0), .double(2.5), .double(-1000), .bool(true), .bool(false), .null]),
            "b": .string("xé😀\n\"\\/"),
            "c": .object([:]),
        ]))
        #expect(try JSONValue(parsing: "9223372036854775807") == .integer(.max))
        #expect(try JSONValue(parsing: "9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try JSONValue(parsing: "\"é😀\"") == .string("é😀"))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "01", "-", "1.", ".5", "1e", "+1", "NaN", "Infinity", "1e999",
        "'a'", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "tru", "nul",
        "[1 2]", "{\"a\" 1}", "{1:2}", "{\"a\":1,\"a\":2}", "1 2", "[]]", "\"\u{01}\"", "\u{FEFF}{}", "/* */{}",
    ])
    func rejectsMalformedText(_ text: String) {
        let error = #expect(throws: ChangeEventError.self) { try JSONValue(parsing: text) }
        #expect(error?.code == .malformedJSON)
        #expect(error?.byteOffset != nil)
    }

    @Test(arguments: [
        [UInt8]([0x22, 0xFF, 0x22]), [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xE0, 0x80, 0xAF, 0x22],
        [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0xE2, 0x82, 0x22], [0x22, 0xC3],
    ])
    func rejectsInvalidUTF8(_ bytes: [UInt8]) {
        let error = #expect(throws: ChangeEventError.self) { try JSONValue(parsing: bytes) }
        #expect(error?.code == .malformedJSON)
    }

    @Test func deepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let error = #expect(throws: ChangeEventError.self) { try JSONValue(parsing: deep) }
        #expect(error?.code == .malformedJSON)
        let allowed = String(repeating: "[", count: 128) + String(repeating: "]", count: 128)
        #expect((try? JSONValue(parsing: allowed)) != nil)
    }

    /// Serializing any value and parsing the text back gives the same value.
    @Test func randomValuesRoundTrip() throws {
        var random = SplitMix64(seed: 0x5EED)
        for iteration in 0..<3000 {
            let value = RandomJSON.value(&random)
            let text = value.jsonText
            let parsed = try JSONValue(parsing: text)
            #expect(parsed == value, "iteration \(iteration): \(text)")
            #expect(parsed.jsonText == text)
        }
    }

    /// Truncating a valid document anywhere (except after the whole of a bare number) always fails cleanly.
    @Test func everyProperPrefixOfAnObjectIsRejected() throws {
        let text = Array(#"{"a":[1,2.5,"x\u00e9"],"b":{"c":null,"d":true}}"#.utf8)
        for length in 0..<text.count {
            #expect(throws: ChangeEventError.self) { try JSONValue(parsing: text[0..<length]) }
        }
    }
}
