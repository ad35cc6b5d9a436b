#pragma once
// The dashboard's other views (app/dashboard_views.cpp): several runs overlaid, a sweep folder as
// all its trials, and an lr-find folder's curve. `vktune dashboard` picks one by what it is given.
#include <filesystem>
#include <string>
#include <vector>

namespace vkt::app {

// A sweep folder (it holds sweep_state.json): its trial-NNN folders, in order.
bool is_sweep_folder(const std::filesystem::path& dir);
// An lr-find folder (it holds lr_find.json).
bool is_lr_find_folder(const std::filesystem::path& dir);

// Overlays the runs of `dirs` (sweep folders expanded into their trials): a PNG when `png` is
// given, else the live window (following the files as they grow).
void show_run_comparison(const std::vector<std::filesystem::path>& dirs, const std::string& png, int width, int height);
void show_lr_find(const std::filesystem::path& dir, const std::string& png, int width, int height);

}  // namespace vkt::app
