// The default stage count of `paligemma run` is capped at the decoder's layers (`Layout.plan(maxStages:)`,
// which BatchRun passes), and the launcher detection reads the variables every launcher sets.
import Foundation
import Testing
import PaliPipeline

@Suite struct LayoutCapTests {
    @Test(arguments: [
        // (N, V given, layers) → (V, S, R)
        (6, nil, 2, 3, 2, 1),      // 5 workers: V = 1 needs S = 4 > 2 layers → the spare ranks are vision ranks
        (6, nil, 3, 2, 3, 1),      // S = 3 (all layers, one each), V = 2
        (6, nil, 4, 1, 4, 1),      // 4 layers: the uncapped default fits
        (6, nil, 18, 1, 4, 1),
        (8, nil, 1, 6, 1, 1),      // 7 workers, 1 layer: V = 6, S = 1
        (10, nil, 1, 2, 1, 3),     // 9 workers: V + S = 3 keeps 3 replicas
        (4, nil, 1, 2, 1, 1),      // default S = 2 capped at 1 layer: V = 2
        (5, nil, 1, 1, 1, 2),      // odd N: unaffected
        (9, 2, 2, 2, 2, 2),        // V given, S fits under the cap
    ] as [(Int, Int?, Int, Int, Int, Int)])
    func defaultStagesAreCappedAtTheLayers(n: Int, v: Int?, layers: Int, expectV: Int, expectS: Int, expectR: Int) throws {
        let layout = try Layout.plan(worldSize: n, visionRanks: v, stages: nil, maxStages: layers)
        #expect(layout.visionRanks == expectV && layout.stages == expectS && layout.replicas == expectR, "\(layout)")
        #expect(layout.worldSize == n)
        #expect(layout.stages <= layers)
    }

    @Test func withVisionRanksGivenAMisfitNamesTheNumbersAndWhatToPass() throws {
        do {
            let layout = try Layout.plan(worldSize: 6, visionRanks: 2, stages: nil, maxStages: 2)
            Issue.record("expected an error, got \(layout)")
        } catch let TransportError.invalidLayout(text) {
            #expect(text.contains("-np 6"), "\(text)")
            #expect(text.contains("3 decoder stages"), "\(text)")
            #expect(text.contains("2 layer(s)"), "\(text)")
            #expect(text.contains("-np 4 or -np 7"), "\(text)")
            #expect(text.contains("--vision-ranks"), "\(text)")
        }
    }

    @Test func anExplicitStageCountAndTheUncappedDefaultAreUnchanged() throws {
        // An explicit S is the user's choice (StagePlan refuses more stages than layers, naming both).
        let explicit = try Layout.plan(worldSize: 6, visionRanks: nil, stages: 4, maxStages: 2)
        #expect(explicit.stages == 4)
        let uncapped = try Layout.plan(worldSize: 6)
        #expect(uncapped.visionRanks == 1 && uncapped.stages == 4)
        let np1 = try Layout.plan(worldSize: 1, maxStages: 1)
        #expect(np1.stages == 1 && np1.worldSize == 3)
    }

    @Test func everyLauncherIsRecognized() {
        let launchers: [[String: String]] = [
            ["OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "1", "PMIX_RANK": "1"],   // Open MPI mpirun
            ["PMIX_RANK": "2", "PMIX_NAMESPACE": "slurm.pmix.7.0", "SLURM_PROCID": "2",
             "SLURM_STEP_NUM_TASKS": "5"],                                                    // srun --mpi=pmix
            ["PMI_RANK": "0", "PMI_SIZE": "4"],                                               // Hydra, srun --mpi=pmi2
            ["PMI_SIZE": "4"],
        ]
        for environment in launchers {
            #expect(MPITransport.isLaunchedByMPIRun(environment: environment), "\(environment)")
        }
        #expect(!MPITransport.isLaunchedByMPIRun(environment: ["SLURM_NTASKS": "9", "PMIX_SIZE": "9", "PATH": "/bin"]))
        #expect(MPITransport.launcherWorldSize(environment: launchers[0]) == 3)
        #expect(MPITransport.launcherWorldSize(environment: launchers[1]) == 5)
        #expect(MPITransport.launcherWorldSize(environment: launchers[2]) == 4)
        #expect(MPITransport.launcherWorldSize(environment: ["PMIX_RANK": "0"]) == nil)
        #expect(MPITransport.launcherRank(environment: launchers[1]) == 2)
        #expect(MPITransport.launcherRank(environment: launchers[2]) == 0)
    }
}
