import ArgumentParser
import ExploreClient
import ExploreQuery
import ExploreWire
import Foundation

/// `explore-projector query --server HOST:PORT [filters...] [--json]`: one SEARCH, printed as a table or JSON.
///
/// Filters use the query core's textual language (`SearchQuery(parameters:)`), so the command line and the
/// service agree on every spelling.
struct QueryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "query", abstract: "Search a running server.")

    @Option(help: "Server address as HOST:PORT.")
    var server: ServerAddress

    @Option(help: "Cities, comma-separated.") var city: String?
    @Option(help: "Areas, comma-separated.") var area: String?
    @Option(help: "Listing types: development, existing (comma-separated).") var type: String?
    @Option(help: "Statuses, comma-separated.") var status: String?
    @Option(help: "Price range MIN..MAX (either end may be empty).") var price: String?
    @Option(help: "Bedrooms range MIN..MAX or a single number.") var bedrooms: String?
    @Option(help: "Sort: price_asc, price_desc, newest, oldest.") var sort: String?
    @Option(help: "Page size, 1...1000.") var limit: String?
    @Option(help: "Rows to skip.") var offset: String?
    @Option(help: "Cursor from a previous page's output.") var cursor: String?
    @Option(help: "Facets, comma-separated: city, area, listing_type, bedrooms, price.") var facets: String?
    @Option(help: ArgumentHelp(
        "Columns to return, comma-separated (default: all).",
        discussion: "id (always returned), " + ColumnSet.named.map(\.name).joined(separator: ", ") + "."))
    var columns: String?
    @Option(help: "Whether to compute the total: true or false.") var total: String?
    @Option(name: .customLong("param"), help: "Any other KEY=VALUE of the query language; repeatable.")
    var parameters: [String] = []

    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "Request timeout in seconds.") var timeout: Int = 10

    func queryParameters() throws -> [(key: String, value: String)] {
        var pairs: [(key: String, value: String)] = []
        let named: [(String, String?)] = [
            ("city", city), ("area", area), ("type", type), ("status", status), ("price", price),
            ("bedrooms", bedrooms), ("sort", sort), ("limit", limit), ("offset", offset), ("cursor", cursor),
            ("facets", facets), ("columns", columns), ("total", total),
        ]
        for (key, value) in named {
            if let value { pairs.append((key, value)) }
        }
        for parameter in parameters {
            guard let equals = parameter.firstIndex(of: "=") else {
                throw ValidationError("--param expects KEY=VALUE, got \(parameter)")
            }
            pairs.append((String(parameter[..<equals]), String(parameter[parameter.index(after: equals)...])))
        }
        return pairs
    }

    /// The query, parsed here so that a bad filter is reported with this command's usage.
    func validate() throws {
        guard timeout >= 1 else { throw ValidationError("--timeout must be at least 1 second") }
        _ = try searchQuery()
    }

    func searchQuery() throws -> SearchQuery {
        do {
            return try SearchQuery(parameters: queryParameters())
        } catch let error as QueryError {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        let query = try searchQuery()
        let client = try await ExploreClient.connect(host: server.host, port: server.port,
                                                     timeout: .seconds(Int64(timeout)))
        let result: SearchResult
        do {
            result = try await client.search(query)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        print(json ? ResultPrinter.json(result) : ResultPrinter.table(result))
    }
}

/// Renders a search result for people (a table) or programs (JSON).
enum ResultPrinter {
    /// The selected columns of a row as (name, text) pairs, `id` first.
    static func cells(_ row: ExploreListing, _ columns: ColumnSet) -> [(String, Any)] {
        var cells: [(String, Any)] = [("id", row.id)]
        for (name, column) in ColumnSet.named where columns.contains(column) {
            let value: Any? = switch column {
            case .listingType: row.listingType.name
            case .status: row.status
            case .title: row.title
            case .locationID: row.locationID
            case .priceFrom: row.priceFrom
            case .priceTo: row.priceTo
            case .bedrooms: row.bedrooms
            case .bathrooms: row.bathrooms
            case .primaryImageURL: row.primaryImageURL
            case .city: row.city
            case .area: row.area
            case .createdAt: row.createdAt
            default: nil
            }
            cells.append((name, value ?? NSNull()))
        }
        return cells
    }

    static func facetText(_ value: FacetValue) -> String {
        switch value {
        case .text(let text): text
        case .listingType(let type): type.name
        case .bedrooms(let bedrooms): String(bedrooms)
        case .priceBucket(let bucket):
            bucket < PriceBuckets.lowerBounds.count ? "\(PriceBuckets.lowerBounds[bucket])+" : "bucket \(bucket)"
        }
    }

    static func table(_ result: SearchResult) -> String {
        let rows = result.rows.map { cells($0, result.columns) }
        let header = cells(ExploreListing(id: 0, listingType: .existing, status: "", title: "", locationID: 0,
                                          priceFrom: nil, priceTo: nil, bedrooms: nil, bathrooms: nil,
                                          primaryImageURL: nil, city: "", area: "", createdAt: 0),
                           result.columns).map(\.0)
        // People read times, not microsecond counts (the JSON keeps the count, as the protocol sends it).
        let iso = ISO8601DateFormatter()
        let text = rows.map {
            $0.map { name, value in
                if value is NSNull { return "-" }
                if name == "created_at", let micros = value as? Int64 {
                    return iso.string(from: Date(timeIntervalSince1970: (Double(micros) / 1_000_000).rounded(.down)))
                }
                return "\(value)"
            }
        }
        var widths = header.map(\.count)
        for row in text { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            var text = zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
            while text.last == " " { text.removeLast() }
            return text
        }
        var output = [line(header), line(widths.map { String(repeating: "-", count: $0) })]
        output += text.map(line)
        var footer: [String] = ["\(result.rows.count) rows"]
        if let total = result.total { footer.append("total \(total)") }
        if let cursor = result.nextCursor { footer.append("next cursor \(cursor.base64URL)") }
        output.append(footer.joined(separator: ", "))
        for facet in result.facets {
            output.append("facet \(facet.field.name): " + facet.counts.map { "\(facetText($0.value))=\($0.count)" }
                .joined(separator: " "))
        }
        return output.joined(separator: "\n")
    }

    static func json(_ result: SearchResult) -> String {
        var object: [String: Any] = [
            "rows": result.rows.map { Dictionary(uniqueKeysWithValues: cells($0, result.columns)) },
            "total": result.total.map { $0 as Any } ?? NSNull(),
            "next_cursor": result.nextCursor.map { $0.base64URL as Any } ?? NSNull(),
        ]
        var facets: [String: Any] = [:]
        for facet in result.facets {
            facets[facet.field.name] = facet.counts.map { ["value": facetText($0.value), "count": $0.count] }
        }
        object["facets"] = facets
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
              let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }
}
