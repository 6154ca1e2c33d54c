@main struct ExploreProjector { static func main() { print("explore-projector") } }
