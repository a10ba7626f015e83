# Runs inside the GUI GIMP 3 (python-fu-eval) for test_gimp.py: opens the sample, selects an ellipse and
# runs Refine Selection INTERACTIVE, as a user does from the menu. The plug-in's dialog then waits for
# the user; the test takes its picture from outside and ends GIMP.

import gi as _gi

_gi.require_version("Gimp", "3.0")
from gi.repository import Gimp as _Gimp, Gio as _Gio  # noqa: E402

_image = _Gimp.file_load(_Gimp.RunMode.NONINTERACTIVE, _Gio.File.new_for_path("/root/mk/astronaut.png"))
_Gimp.Display.new(_image)
_image.select_ellipse(_Gimp.ChannelOps.REPLACE, 75, 30, 130, 165)
_proc = _Gimp.get_pdb().lookup_procedure("plug-in-mattekit-refine-selection")
_config = _proc.create_config()
_config.set_property("run-mode", _Gimp.RunMode.INTERACTIVE)
_config.set_property("image", _image)
_config.set_core_object_array("drawables", [_image.get_layers()[0]])
_proc.run(_config)
